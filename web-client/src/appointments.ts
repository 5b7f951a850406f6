// Appointment table with status changes, shared by the Today page and the patient page.
import { api } from './api';
import { h, replaceChildren, type Child } from './dom';
import { messageForError } from './lib/errors';
import { localClock, localDay } from './lib/time';
import { allowedTransitions, kindLabel, needsConfirmation, transitionActionLabel, type AppointmentStatus } from './lib/transitions';
import type { Appointment } from './types';
import { statusBadge, table, type Column } from './ui';

export function timeRange(a: Appointment): string {
  return `${localClock(a.start_local, a.start, a.time_zone)}–${localClock(a.end_local, a.end, a.time_zone)}`;
}

export interface AppointmentTableOptions {
  caption: string;
  showDate?: boolean;
  showPatient?: boolean;
  showPractitioner?: boolean;
  canTransition: boolean;
  /** Extra per-row actions (e.g. a new join link for admins). */
  extraActions?: (a: Appointment, update: (next: Appointment) => void) => Child;
  /** Where results of actions are announced. */
  announce: (text: string) => void;
  alert: (text: string) => void;
}

/** Renders a live table; returns the container (re-rendered in place after a status change). */
export function appointmentTable(list: Appointment[], opts: AppointmentTableOptions): HTMLElement {
  const container = h('div', { class: 'appointments' });
  const rows = [...list];

  const draw = (focusId?: string) => {
    const columns: Column<Appointment>[] = [];
    if (opts.showDate) columns.push({ header: 'Date', cell: (a) => localDay(a.start_local) || a.start.slice(0, 10), className: 'nowrap' });
    columns.push({ header: 'Time', cell: (a) => h('span', { class: 'time' }, timeRange(a)), className: 'nowrap' });
    if (opts.showPatient) columns.push({ header: 'Patient', cell: (a) => h('a', { href: `/patients/${encodeURIComponent(a.patient_id)}` }, a.patient_name) });
    if (opts.showPractitioner) columns.push({ header: 'Clinician', cell: (a) => a.practitioner_name });
    columns.push({
      header: 'Kind',
      cell: (a) =>
        a.kind === 'video' && !['finished', 'cancelled', 'no_show'].includes(a.status)
          ? h('span', null, kindLabel(a.kind), ' ', h('a', { href: `/visits/${encodeURIComponent(a.id)}`, class: 'button small', 'data-testid': 'open-visit' }, 'Open visit'))
          : kindLabel(a.kind),
    });
    columns.push({ header: 'Reason', cell: (a) => a.reason || '—' });
    columns.push({ header: 'Status', cell: (a) => statusBadge(a.status) });
    if (opts.canTransition || opts.extraActions) {
      columns.push({
        header: 'Actions',
        cell: (a) => {
          const update = (next: Appointment) => {
            const i = rows.findIndex((r) => r.id === a.id);
            if (i >= 0) rows[i] = next;
            draw(next.id);
          };
          return h(
            'div',
            { class: 'row-actions' },
            opts.canTransition ? allowedTransitions(a.status).map((to) => transitionButton(a, to, update, opts)) : null,
            opts.extraActions ? opts.extraActions(a, update) : null,
          );
        },
      });
    }
    replaceChildren(
      container,
      table(opts.caption, columns, rows, { rowAttrs: (a) => ({ 'data-appointment-id': a.id }) }),
    );
    if (focusId) {
      // Keep keyboard focus in the row that changed.
      const row = container.querySelector<HTMLElement>(`tr[data-appointment-id="${CSS.escape(focusId)}"]`);
      (row?.querySelector<HTMLElement>('button') ?? row?.querySelector<HTMLElement>('a'))?.focus();
    }
  };
  draw();
  return container;
}

function transitionButton(a: Appointment, to: AppointmentStatus, update: (next: Appointment) => void, opts: AppointmentTableOptions): HTMLButtonElement {
  const label = transitionActionLabel(to);
  const button = h(
    'button',
    {
      type: 'button',
      class: `button small ${needsConfirmation(to) ? 'danger' : 'secondary'}`,
      'aria-label': `${label}: ${a.patient_name} at ${localClock(a.start_local, a.start, a.time_zone)}`,
      onclick: async () => {
        if (needsConfirmation(to) && !window.confirm(`${label} the ${localClock(a.start_local, a.start, a.time_zone)} appointment of ${a.patient_name}?`)) return;
        button.disabled = true;
        try {
          const next = await api<Appointment>(`/appointments/${encodeURIComponent(a.id)}/transitions`, { body: { to } });
          update(next);
          opts.announce(`${a.patient_name}, ${localClock(a.start_local, a.start, a.time_zone)}: now ${next.status.replace('_', ' ')}.`);
        } catch (err) {
          button.disabled = false;
          opts.alert(messageForError(err));
        }
      },
    },
    label,
  );
  return button;
}
