// The patient's page: exchange the join link's token, show the visit, take consent.
import { api, getClinic } from '../api';
import { h, replaceChildren } from '../dom';
import { ApiError, messageForError } from '../lib/errors';
import { joinTokenFromHash } from '../lib/join';
import { formatDayLabel, localClock, localDay } from '../lib/time';
import { session } from '../session';
import { offerEntry } from '../visit-entry';
import type { JoinAnswer, Visit } from '../types';
import type { PageContext } from '../ui';

export const CHECKED_IN_TEXT = "You're checked in. Check your camera and microphone, then join the waiting room.";

function formatWithZone(iso: string, timeZone: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return new Intl.DateTimeFormat(undefined, { timeZone, dateStyle: 'full', timeStyle: 'short' }).format(new Date(ms)) + ` (${timeZone})`;
}

export async function joinPage(ctx: PageContext): Promise<void> {
  ctx.title('Your visit');
  let tz = ctx.clinic?.time_zone;
  if (!tz) {
    try {
      tz = (await getClinic()).time_zone;
    } catch {
      tz = undefined;
    }
  }
  const clinicName = ctx.clinic?.name ?? 'Bedside';
  const shell = (...children: Parameters<typeof h>[2][]) =>
    replaceChildren(ctx.main, h('div', { class: 'narrow join' }, h('p', { class: 'clinic-name' }, clinicName), ...children));

  const problem = (title: string, text: string, retry = false, tone: 'error' | 'info' = 'error') =>
    shell(
      h('h1', { tabindex: '-1' }, title),
      h('div', { class: `alert ${tone}`, role: 'alert' }, h('p', null, text)),
      retry ? h('p', null, h('button', { type: 'button', class: 'button primary', onclick: () => location.reload() }, 'Try again')) : null,
    );

  shell(h('h1', { tabindex: '-1' }, 'Your visit'), h('p', { class: 'loading', role: 'status' }, 'Opening your visit…'));

  const token = joinTokenFromHash(location.hash);
  if (token) {
    try {
      const answer = await api<JoinAnswer>('/auth/join', { auth: 'none', body: { token } });
      session.saveVisit({ access_token: answer.access_token, appointment_id: answer.appointment_id, expires_at: Date.now() + answer.expires_in * 1000 });
      // The token has been used: take it out of the address bar (and the history).
      history.replaceState(null, '', '/join');
    } catch (err) {
      if (ctx.signal.aborted) return;
      const zone = tz;
      const message = messageForError(err, { formatInstant: zone ? (iso) => formatWithZone(iso, zone) : undefined });
      const code = err instanceof ApiError ? err.code : '';
      if (code === 'join_link_early') problem('Your visit has not opened yet', message, true, 'info');
      else if (code === 'join_link_expired') problem('This link has expired', message);
      else if (code === 'invalid_join_link') problem('This link does not work', message);
      else problem('Your visit could not be opened', message, true);
      return;
    }
  } else if (!session.visit()) {
    problem('Open your visit link', 'To join your visit, open the link the clinic sent you (by email or text message). If you do not have one, contact the clinic.', false, 'info');
    return;
  }
  if (ctx.signal.aborted) return;

  let visit: Visit;
  try {
    visit = await api<Visit>('/visit', { auth: 'visit', signal: ctx.signal });
  } catch (err) {
    if (ctx.signal.aborted) return;
    if (err instanceof ApiError && err.status === 401) {
      session.clearVisit();
      problem('Your visit session has ended', 'Please open the link from your message again.');
    } else {
      problem('Your visit could not be opened', messageForError(err), true);
    }
    return;
  }
  const a = visit.appointment;
  const zone = a.time_zone || tz || 'UTC';
  const day = localDay(a.start_local);
  const status = h('div', { role: 'status', class: 'checkin-status' });
  const consentArea = h('div');
  const callArea = h('div', { class: 'visit-call' });
  const checkedIn = () => {
    replaceChildren(consentArea);
    status.replaceChildren(h('p', { class: 'alert success' }, CHECKED_IN_TEXT));
    offerEntry({ appointmentId: visit.appointment.id, token: async () => session.visit()?.access_token ?? null, callArea, status, signal: ctx.signal });
  };

  shell(
    h('h1', { tabindex: '-1' }, 'Your visit'),
    h('p', { class: 'lead' }, `Hello ${visit.patient_given_name}.`),
    h(
      'dl',
      { class: 'details' },
      h('div', null, h('dt', null, 'Date'), h('dd', null, day ? formatDayLabel(day) : a.start_local)),
      h('div', null, h('dt', null, 'Time'), h('dd', null, `${localClock(a.start_local, a.start, zone)}–${localClock(a.end_local, a.end, zone)} (${zone})`)),
      h('div', null, h('dt', null, 'Clinician'), h('dd', null, a.practitioner_name)),
    ),
    consentArea,
    status,
    callArea,
  );

  if (!visit.consent_required) {
    checkedIn();
    return;
  }
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  const agree = h('button', { type: 'button', class: 'button primary large' }, 'I agree');
  agree.addEventListener('click', async () => {
    agree.disabled = true;
    alert.replaceChildren();
    try {
      await api<unknown>('/visit/consent', { auth: 'visit', body: { consent_version: visit.consent_version } });
      checkedIn();
      ctx.main.querySelector<HTMLElement>('h1')?.focus();
    } catch (err) {
      agree.disabled = false;
      alert.replaceChildren(h('p', null, messageForError(err)));
    }
  });
  replaceChildren(
    consentArea,
    h(
      'section',
      { class: 'card consent', 'aria-labelledby': 'consent-heading' },
      h('h2', { id: 'consent-heading' }, 'Before your visit'),
      h('p', null, 'Please read this and agree to continue.'),
      h('div', { class: 'consent-text', tabindex: '0', 'aria-label': 'Consent text' }, visit.consent_text),
      h('p', { class: 'muted small' }, `Version ${visit.consent_version}`),
      alert,
      agree,
    ),
  );
}
