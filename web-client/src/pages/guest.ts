// A guest's page (interpreter, family member): the guest link's token and the guest's name are
// exchanged once for a session scoped to the visit's call; then the device check, the waiting
// room and the call. The link is single-use: the session (kept in this tab) is what a reload uses.
import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { ApiError, messageForError } from '../lib/errors';
import { joinTokenFromHash } from '../lib/join';
import type { PageContext } from '../ui';
import { offerEntry } from '../visit-entry';

const GUEST_KEY = 'bedside.guest';

interface GuestSession {
  access_token: string;
  appointment_id: string;
  expires_at: number;
}

function storedSession(): GuestSession | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(GUEST_KEY) ?? 'null') as GuestSession | null;
    return s && s.expires_at > Date.now() ? s : null;
  } catch {
    return null;
  }
}

export async function guestPage(ctx: PageContext): Promise<void> {
  ctx.title('Join a video visit');
  const status = h('div', { role: 'status', class: 'checkin-status' });
  const callArea = h('div', { class: 'visit-call' });
  const problem = h('div', { role: 'alert', class: 'form-alert' });
  const shell = (...children: Parameters<typeof h>[2][]) =>
    replaceChildren(ctx.main, h('div', { class: 'narrow join' }, h('p', { class: 'clinic-name' }, ctx.clinic?.name ?? 'Bedside'), h('h1', { tabindex: '-1' }, 'Join a video visit'), ...children));

  const enter = (s: GuestSession) => {
    shell(h('p', { class: 'lead' }, 'Check your camera and microphone, then join the waiting room. The clinician will let you in.'), status, callArea);
    offerEntry({ appointmentId: s.appointment_id, token: async () => storedSession()?.access_token ?? null, callArea, status, signal: ctx.signal });
  };

  const existing = storedSession();
  const token = joinTokenFromHash(location.hash);
  if (!token) {
    if (existing) enter(existing);
    else shell(h('div', { class: 'alert info', role: 'alert' }, h('p', null, 'Open the guest link you were sent. If you do not have one, ask the clinician for it.')));
    return;
  }
  const name = h('input', { type: 'text', id: 'guest-name', maxlength: 80, autocomplete: 'name', required: true });
  const go = h('button', { type: 'submit', class: 'button primary large' }, 'Continue');
  const form = h('form', { class: 'card' }, h('label', { for: 'guest-name' }, 'Your name (shown to the others in the call)'), name, problem, go);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    problem.replaceChildren();
    go.disabled = true;
    try {
      const answer = await api<{ access_token: string; expires_in: number; appointment_id: string }>('/auth/guest', { auth: 'none', body: { token, name: name.value } });
      const s: GuestSession = { access_token: answer.access_token, appointment_id: answer.appointment_id, expires_at: Date.now() + answer.expires_in * 1000 };
      sessionStorage.setItem(GUEST_KEY, JSON.stringify(s));
      // The link is used up: take it out of the address bar (and the history).
      history.replaceState(null, '', '/guest');
      enter(s);
    } catch (err) {
      go.disabled = false;
      const code = err instanceof ApiError ? err.code : '';
      const text = code === 'guest_link_used' ? 'This guest link has already been used. Ask the clinician for a new one.' : messageForError(err);
      problem.replaceChildren(h('p', null, text));
    }
  });
  shell(form);
}
