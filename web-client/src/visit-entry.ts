// The way into a call for patients and guests: a camera and microphone check (preview, choice of
// devices, microphone level, network check), then the waiting room and the call. A reload during the call goes straight back in (the seat
// keeps its admission for a grace period), remembered per tab in sessionStorage.
import type { CallPhase } from './call';
import { startCallView } from './call-view';
import { type DeviceCheck, startDeviceCheck } from './device-check';
import { openCameraAndMicrophone } from './devices';
import { h, replaceChildren } from './dom';

/** Set while this tab is in a visit, so a reload goes straight back in. */
const IN_CALL_KEY = 'bedside.visit.in_call';
/** The camera and microphone chosen in the device check, for that reload. */
const DEVICES_KEY = 'bedside.visit.devices';

const PHASE_TEXT: Partial<Record<CallPhase, string>> = {
  connecting: 'Connecting…',
  waiting: 'You are in the waiting room. Your clinician will let you in shortly; please keep this page open.',
  in_call: 'You are in the call.',
  reconnecting: 'Your connection dropped. Reconnecting…',
  ended: 'Your visit has ended. Thank you. You can close this page.',
  denied: 'Your clinician could not admit you to this call. Please contact the clinic.',
  removed: 'You were removed from the call. Contact the clinic if this was a mistake.',
  replaced: 'You joined this visit from another tab or window; continue there.',
};

export interface EntryOptions {
  appointmentId: string;
  token: () => Promise<string | null>;
  /** Where the device check and then the call go. */
  callArea: HTMLElement;
  /** Where the phase messages go. */
  status: HTMLElement;
  signal: AbortSignal;
}

/** Shows the device check; "Join the waiting room" starts the call. */
export function offerEntry(opts: EntryOptions): void {
  const { callArea, status, appointmentId } = opts;
  const joinCall = (local: MediaStream) => {
    sessionStorage.setItem(IN_CALL_KEY, appointmentId);
    sessionStorage.setItem(
      DEVICES_KEY,
      JSON.stringify({ camera: local.getVideoTracks()[0]?.getSettings().deviceId, microphone: local.getAudioTracks()[0]?.getSettings().deviceId }),
    );
    const stopLocal = () => {
      for (const track of local.getTracks()) track.stop();
    };
    status.replaceChildren(h('p', { class: 'alert info', 'data-testid': 'visit-phase' }, PHASE_TEXT.connecting ?? ''));
    const view = startCallView({
      appointmentId,
      token: opts.token,
      local,
      handlers: {
        phase: (phase, detail) => {
          const text = PHASE_TEXT[phase] ?? `The call could not continue (${detail ?? phase}). Reload the page to try again.`;
          status.replaceChildren(h('p', { class: `alert ${phase === 'failed' || phase === 'denied' ? 'error' : 'info'}`, 'data-testid': 'visit-phase', 'data-phase': phase }, text));
          view.root.hidden = phase !== 'in_call' && phase !== 'reconnecting';
          if (phase === 'ended' || phase === 'denied' || phase === 'removed') {
            sessionStorage.removeItem(IN_CALL_KEY);
            stopLocal();
          }
        },
      },
      onLeave: () => {
        sessionStorage.removeItem(IN_CALL_KEY);
        stopLocal();
        status.replaceChildren(h('p', { class: 'alert info', 'data-testid': 'visit-phase', 'data-phase': 'left' }, 'You left the call. To go back in, reload this page.'));
        view.root.hidden = true;
      },
    });
    view.root.hidden = true;
    replaceChildren(callArea, view.root);
    opts.signal.addEventListener('abort', () => {
      view.call.stop();
      stopLocal();
    });
  };

  const problemText = h('div', { role: 'alert', class: 'form-alert' });
  const start = h('button', { type: 'button', class: 'button primary large' }, 'Check camera and microphone');
  const checkArea = h('div');
  let check: DeviceCheck | null = null;
  start.addEventListener('click', async () => {
    problemText.replaceChildren();
    if (!check) {
      start.disabled = true;
      try {
        check = await startDeviceCheck();
      } catch (err) {
        problemText.replaceChildren(h('p', null, err instanceof Error ? err.message : String(err)));
        start.disabled = false;
        return;
      }
      replaceChildren(checkArea, check.root);
      start.textContent = 'Join the waiting room';
      start.disabled = false;
      return;
    }
    start.disabled = true;
    const stream = await check.stream();
    check.stop();
    joinCall(stream);
  });
  replaceChildren(callArea, h('section', { class: 'card device-check-entry', 'aria-label': 'Before the call' }, checkArea, problemText, start));
  if (sessionStorage.getItem(IN_CALL_KEY) === appointmentId) {
    // Back into the call with the devices chosen before the reload.
    const chosen = JSON.parse(sessionStorage.getItem(DEVICES_KEY) ?? '{}') as { camera?: string; microphone?: string };
    void openCameraAndMicrophone(chosen)
      .catch(() => openCameraAndMicrophone())
      .then((stream) => joinCall(stream))
      .catch(() => undefined);
  }
}
