import { api, serverNowMs } from '../api';
import { appointmentTable } from '../appointments';
import { h, replaceChildren } from '../dom';
import { addDays, dateInZone, formatDayLabel, parseDate } from '../lib/time';
import type { Appointment } from '../types';
import { empty, loadError, pageHeading, type PageContext } from '../ui';

export async function todayPage(ctx: PageContext): Promise<void> {
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const today = dateInZone(serverNowMs(), tz);
  const requested = ctx.query.get('date');
  const date = requested && parseDate(requested) ? requested : today;
  const isToday = date === today;
  ctx.title(isToday ? 'Today' : formatDayLabel(date));

  const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  const body = h('div', null, h('p', { class: 'loading' }, 'Loading appointments…'));
  const dayLink = (d: string, text: string, rel?: string) => h('a', { href: d === today ? '/today' : `/today?date=${d}`, class: 'button secondary small', rel }, text);

  replaceChildren(
    ctx.main,
    pageHeading(
      isToday ? 'Today' : 'Appointments',
      h('p', { class: 'subtitle', 'data-testid': 'shown-date', 'data-date': date }, formatDayLabel(date), isToday ? '' : ` (${date})`),
    ),
    h(
      'nav',
      { class: 'day-nav', 'aria-label': 'Day' },
      dayLink(addDays(date, -1), '← Previous day', 'prev'),
      isToday ? null : dayLink(today, 'Today'),
      dayLink(addDays(date, 1), 'Next day →', 'next'),
      h('button', { type: 'button', class: 'button secondary small', onclick: () => ctx.navigate(location.pathname + location.search, { replace: true }) }, 'Refresh'),
    ),
    h('p', { class: 'muted' }, `Times are in the clinic's time zone (${tz}).`),
    alert,
    status,
    body,
  );

  let list: Appointment[];
  try {
    list = await api<Appointment[]>('/appointments', { query: { date }, signal: ctx.signal });
  } catch (err) {
    replaceChildren(body, loadError(err));
    return;
  }
  if (list.length === 0) {
    replaceChildren(body, empty(isToday ? 'No appointments today.' : 'No appointments on this day.'));
    return;
  }
  const showPractitioner = ctx.me?.role === 'admin' || new Set(list.map((a) => a.practitioner_id)).size > 1;
  replaceChildren(
    body,
    appointmentTable(list, {
      caption: `Appointments on ${formatDayLabel(date)}`,
      showPatient: true,
      showPractitioner,
      canTransition: true,
      announce: (t) => {
        alert.replaceChildren();
        status.textContent = t;
      },
      alert: (t) => {
        status.textContent = '';
        alert.replaceChildren(h('p', null, t));
      },
    }),
  );
}
