// The way into a call for patients and guests: a camera and microphone check with a preview,
// then the waiting room and the call. A reload during the call goes straight back in (the seat
// keeps its admission for a grace period), remembered per tab in sessionStorage.
import type { CallPhase } from './call';
import { openCameraAndMicrophone, startCallView } from './call-view';
import { h, replaceChildren } from './dom';

/** Set while this tab is in a visit, so a reload goes straight back in. */
const IN_CALL_KEY = 'bedside.visit.in_call';

const PHASE_TEXT: Partial<Record<CallPhase, string>> = {
  connecting: 'Connecting…',
  waiting: 'You are in the waiting room. Your clinician will let you in shortly; please keep this page open.',
  in_call: 'You are in the call.',
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
          view.root.hidden = phase !== 'in_call';
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
  const preview = h('video', { class: 'preview', autoplay: true, playsinline: true, muted: true, 'data-testid': 'preview' });
  preview.muted = true;
  const start = h('button', { type: 'button', class: 'button primary large' }, 'Check camera and microphone');
  let local: MediaStream | null = null;
  start.addEventListener('click', async () => {
    problemText.replaceChildren();
    if (!local) {
      start.disabled = true;
      try {
        local = await openCameraAndMicrophone();
      } catch (err) {
        problemText.replaceChildren(h('p', null, err instanceof Error ? err.message : String(err)));
        start.disabled = false;
        return;
      }
      preview.srcObject = local;
      start.textContent = 'Join the waiting room';
      start.disabled = false;
      return;
    }
    joinCall(local);
  });
  replaceChildren(callArea, h('section', { class: 'card device-check', 'aria-label': 'Camera and microphone' }, preview, problemText, start));
  if (sessionStorage.getItem(IN_CALL_KEY) === appointmentId) {
    void openCameraAndMicrophone()
      .then((stream) => {
        local = stream;
        joinCall(stream);
      })
      .catch(() => undefined);
  }
}
