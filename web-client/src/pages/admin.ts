import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { formatInstant } from '../lib/time';
import type { Device, User } from '../types';
import { empty, loadError, pageHeading, section, table, type PageContext } from '../ui';
import { deviceKindLabel } from './patient';

const TASKS: [string, string, string][] = [
  ['/admin/patients/new', 'Add patient', 'Register a new patient.'],
  ['/admin/users/new', 'Add user', 'Create a clinician or administrator account.'],
  ['/admin/devices/new', 'Add device', 'Register a home monitoring device and get its MQTT credentials.'],
  ['/admin/appointments/new', 'Book appointment', 'Book a video or in-person visit and send the join link.'],
  ['/patients', 'Care teams', 'Open a patient to assign clinicians to the care team.'],
  ['/admin/audit', 'Audit log', 'Who looked at or changed what, and when.'],
];

export async function adminPage(ctx: PageContext): Promise<void> {
  ctx.title('Administration');
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const usersCard = section('Staff accounts', 'staff', h('p', { class: 'loading' }, 'Loading…'));
  const devicesCard = section('Devices', 'devices', h('p', { class: 'loading' }, 'Loading…'));
  usersCard.classList.add('wide');
  devicesCard.classList.add('wide');
  replaceChildren(
    ctx.main,
    pageHeading('Administration'),
    h(
      'nav',
      { 'aria-label': 'Administration tasks' },
      h(
        'ul',
        { class: 'task-grid' },
        TASKS.map(([href, text, desc]) => h('li', null, h('a', { href, class: 'task' }, h('span', { class: 'task-title' }, text), h('span', { class: 'task-desc' }, desc)))),
      ),
    ),
    h('div', { class: 'cards' }, usersCard, devicesCard),
  );

  const [users, devices] = await Promise.allSettled([api<User[]>('/users', { signal: ctx.signal }), api<Device[]>('/devices', { signal: ctx.signal })]);
  if (ctx.signal.aborted) return;
  const heading = (id: string, text: string) => h('h2', { id: `${id}-heading` }, text);
  replaceChildren(
    usersCard,
    heading('staff', 'Staff accounts'),
    users.status === 'rejected'
      ? loadError(users.reason)
      : users.value.length === 0
        ? empty('No accounts.')
        : table(
            'Staff accounts',
            [
              { header: 'Name', cell: (u) => u.name },
              { header: 'Email', cell: (u) => u.email },
              { header: 'Role', cell: (u) => (u.role === 'admin' ? 'Administrator' : 'Clinician') },
              { header: 'Two-step sign-in', cell: (u) => (u.totp_enabled === undefined ? '—' : u.totp_enabled ? 'On' : 'Off') },
            ],
            users.value,
            { captionHidden: true },
          ),
  );
  replaceChildren(
    devicesCard,
    heading('devices', 'Devices'),
    devices.status === 'rejected'
      ? loadError(devices.reason)
      : devices.value.length === 0
        ? empty('No devices registered.')
        : table(
            'Devices',
            [
              { header: 'Device', cell: (d) => deviceKindLabel(d.kind) },
              { header: 'Serial', cell: (d) => h('span', { class: 'mono' }, d.serial) },
              { header: 'MQTT user', cell: (d) => h('span', { class: 'mono' }, d.mqtt_username) },
              { header: 'Patient', cell: (d) => (d.patient_id ? h('a', { href: `/patients/${encodeURIComponent(d.patient_id)}` }, 'Open patient') : 'Not assigned') },
              { header: 'Registered', cell: (d) => formatInstant(d.created_at, tz) },
            ],
            devices.value,
            { captionHidden: true },
          ),
  );
}
