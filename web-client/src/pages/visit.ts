// The clinician's visit page: the camera and microphone check (preview, choice, level, network),
// then the call with the waiting list (admit or deny), remove, and "End visit" (which disconnects
// everyone and finishes the appointment).
import { api, freshStaffAccessToken } from '../api';
import type { Participant } from '../call';
import { startCallView } from '../call-view';
import { type DeviceCheck, startDeviceCheck } from '../device-check';
import { openCameraAndMicrophone } from '../devices';
import { h, replaceChildren } from '../dom';
import { inCallVitals } from '../in-call-vitals';
import { messageForError } from '../lib/errors';
import type { Appointment } from '../types';
import { loadError, pageHeading, type PageContext } from '../ui';

export async function visitPage(ctx: PageContext): Promise<void> {
  const id = ctx.params.id ?? '';
  ctx.title('Video visit');
  const body = h('div', null, h('p', { class: 'loading' }, 'Loading the visit…'));
  replaceChildren(ctx.main, pageHeading('Video visit'), body);
  let appointment: Appointment;
  try {
    appointment = await api<Appointment>(`/appointments/${encodeURIComponent(id)}`, { signal: ctx.signal });
  } catch (err) {
    replaceChildren(body, loadError(err));
    return;
  }
  const status = h('div', { role: 'status', 'aria-live': 'polite' });
  const problem = h('div', { role: 'alert', class: 'form-alert' });
  const lobby = h('section', { class: 'card lobby', 'aria-labelledby': 'lobby-heading', 'data-testid': 'lobby' }, h('h2', { id: 'lobby-heading' }, 'Waiting room'), h('p', { class: 'muted' }, 'Nobody is waiting.'));
  const callArea = h('div', { class: 'visit-call' });
  const vitalsArea = h('div');
  const guests = guestInvitations(appointment.id);
  const checkArea = h('div', null, h('p', { class: 'muted' }, 'Starting your camera and microphone…'));
  const start = h('button', { type: 'button', class: 'button primary large', 'data-testid': 'start-visit' }, 'Start the visit');

  replaceChildren(
    body,
    h('p', { class: 'lead' }, `${appointment.patient_name} · ${appointment.start_local.slice(11, 16)}–${appointment.end_local.slice(11, 16)} · ${appointment.reason}`),
    problem,
    status,
    h('div', { class: 'visit-layout' }, h('div', null, callArea), h('div', { class: 'visit-side' }, lobby, guests, vitalsArea)),
  );
  replaceChildren(callArea, h('section', { class: 'card device-check-entry', 'aria-label': 'Before the visit' }, checkArea, start));
  // The check starts with the page: a clinician opening a visit is about to use the camera.
  let check: DeviceCheck | null = null;
  const checking = startDeviceCheck().then(
    (ready) => {
      check = ready;
      replaceChildren(checkArea, ready.root);
    },
    (err: unknown) => {
      replaceChildren(checkArea);
      problem.replaceChildren(h('p', null, err instanceof Error ? err.message : String(err)));
    },
  );
  // Leaving the page before starting lets the camera go.
  let started = false;
  ctx.signal.addEventListener('abort', () => {
    void checking.then(async () => {
      if (started || !check) return;
      check.stop();
      for (const track of (await check.stream()).getTracks()) track.stop();
    });
  });

  const showLobby = (waiting: Participant[], admit: (id: string) => void, deny: (id: string) => void) => {
    const items = waiting.map((p) =>
      h(
        'li',
        { 'data-testid': 'waiting-participant', 'data-participant': p.participant_id },
        h('span', null, `${p.name} (${p.role})`),
        h('button', { type: 'button', class: 'button primary small', onclick: () => admit(p.participant_id) }, 'Admit'),
        h('button', { type: 'button', class: 'button secondary small', onclick: () => deny(p.participant_id) }, 'Deny'),
      ),
    );
    replaceChildren(lobby, h('h2', { id: 'lobby-heading' }, 'Waiting room'), items.length ? h('ul', { class: 'waiting-list' }, items) : h('p', { class: 'muted' }, 'Nobody is waiting.'));
  };

  start.addEventListener('click', async () => {
    start.disabled = true;
    problem.replaceChildren();
    let local: MediaStream;
    try {
      await checking;
      // The devices chosen in the check; if it failed, another try (the camera may be free now).
      if (check) {
        local = await check.stream();
        started = true;
        check.stop();
      } else {
        local = await openCameraAndMicrophone();
      }
    } catch (err) {
      problem.replaceChildren(h('p', null, err instanceof Error ? err.message : String(err)));
      start.disabled = false;
      return;
    }
    const stopLocal = () => {
      for (const track of local.getTracks()) track.stop();
    };
    const vitals = inCallVitals(appointment.patient_id, (alertId) => view.call.ackAlert(alertId));
    replaceChildren(vitalsArea, vitals.root);
    const view = startCallView({
      appointmentId: appointment.id,
      token: () => freshStaffAccessToken(),
      local,
      watchPatient: appointment.patient_id,
      extraControls: (call) => {
        const end = h('button', { type: 'button', class: 'button danger', 'data-testid': 'end-visit' }, 'End visit');
        end.addEventListener('click', () => {
          if (confirm('End the visit for everyone?')) call.endVisit();
        });
        return [end];
      },
      handlers: {
        feed: vitals.onFeed,
        lobby: (waiting) => showLobby(waiting, (p) => view.call.admit(p), (p) => view.call.deny(p)),
        phase: (phase, detail) => {
          if (phase === 'ended') {
            stopLocal();
            status.replaceChildren(h('p', { class: 'alert success', 'data-testid': 'visit-phase', 'data-phase': 'ended' }, 'The visit has ended and is recorded as finished.'));
            view.root.hidden = true;
          } else if (phase === 'failed' || phase === 'replaced') {
            status.replaceChildren(h('p', { class: 'alert error', 'data-testid': 'visit-phase', 'data-phase': phase }, phase === 'replaced' ? 'This visit was opened in another tab.' : `The call stopped (${detail ?? 'error'}). Reload to rejoin.`));
          } else {
            status.replaceChildren(h('p', { class: 'muted', 'data-testid': 'visit-phase', 'data-phase': phase }, phase === 'in_call' ? 'You are in the call.' : phase === 'reconnecting' ? 'The connection dropped. Reconnecting…' : 'Connecting…'));
          }
        },
        error: (code, message, refused) => {
          if (refused === 'candidate') return;
          problem.replaceChildren(h('p', null, messageForError(new Error(`${message} (${code})`))));
        },
      },
      onLeave: () => {
        stopLocal();
        status.replaceChildren(h('p', { class: 'alert info', 'data-testid': 'visit-phase', 'data-phase': 'left' }, 'You left the call; the patient stays in it. Reload to go back.'));
        view.root.hidden = true;
      },
    });
    replaceChildren(callArea, view.root);
    ctx.signal.addEventListener('abort', () => {
      view.call.stop();
      stopLocal();
    });
  });
}

interface GuestLink {
  id: string;
  label: string;
  guest_name: string | null;
  used_at: string | null;
  revoked_at: string | null;
}

/** "Invite a guest": a single-use link per guest, listed with Revoke. */
function guestInvitations(appointmentId: string): HTMLElement {
  const base = `/appointments/${encodeURIComponent(appointmentId)}/guest-links`;
  const list = h('ul', { class: 'guest-links', 'data-testid': 'guest-links' });
  const issued = h('div', { 'data-testid': 'guest-link-issued' });
  const problem = h('div', { role: 'alert', class: 'form-alert' });
  const label = h('input', { type: 'text', id: 'guest-label', maxlength: 80, placeholder: 'Interpreter, daughter, …', required: true });
  const refresh = async () => {
    try {
      const links = await api<GuestLink[]>(base);
      replaceChildren(
        list,
        links.map((l) => {
          const state = l.revoked_at ? 'revoked' : l.used_at ? `joined as ${l.guest_name ?? 'guest'}` : 'not used yet';
          const revoke = h('button', { type: 'button', class: 'button secondary small' }, 'Revoke');
          revoke.addEventListener('click', async () => {
            await api(`${base}/${encodeURIComponent(l.id)}`, { method: 'DELETE' }).catch((err: unknown) => problem.replaceChildren(h('p', null, messageForError(err))));
            await refresh();
          });
          return h('li', { 'data-status': l.revoked_at ? 'revoked' : l.used_at ? 'used' : 'unused' }, h('span', null, `${l.label}: ${state}`), l.revoked_at ? null : revoke);
        }),
      );
    } catch (err) {
      problem.replaceChildren(h('p', null, messageForError(err)));
    }
  };
  const form = h('form', { class: 'guest-form' }, h('label', { for: 'guest-label' }, 'Guest (what to call them)'), label, h('button', { type: 'submit', class: 'button secondary small' }, 'Create guest link'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    try {
      const answer = await api<{ join_url: string }>(base, { body: { label: label.value } });
      const url = h('input', { type: 'text', readonly: true, value: answer.join_url, 'aria-label': 'Guest link', 'data-testid': 'guest-link-url' });
      replaceChildren(issued, h('p', { class: 'small' }, 'Send this link to the guest (it works once):'), url);
      label.value = '';
      await refresh();
    } catch (err) {
      problem.replaceChildren(h('p', null, messageForError(err)));
    }
  });
  void refresh();
  return h('section', { class: 'card guests', 'aria-labelledby': 'guests-heading' }, h('h2', { id: 'guests-heading' }, 'Guests'), form, problem, issued, list);
}
