import { api } from '../api';
import { copyField, h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import type { DeviceCreated, Patient } from '../types';
import { definitionList, loadError, pageHeading, type PageContext } from '../ui';
import { deviceKindLabel } from './patient';

const KINDS = ['pulse_oximeter', 'blood_pressure_monitor', 'thermometer', 'scale', 'glucometer'];

export async function newDevicePage(ctx: PageContext): Promise<void> {
  ctx.title('Add device');
  let patients: Patient[] = [];
  let patientsError: unknown = null;
  try {
    patients = await api<Patient[]>('/patients', { signal: ctx.signal });
  } catch (err) {
    patientsError = err;
  }
  if (ctx.signal.aborted) return;

  const result = h('div', { class: 'result' });
  const form = h('form', { class: 'stack card', 'aria-labelledby': 'add-device-heading' });
  const fc = new FormController(form);
  const preselect = ctx.query.get('patient_id') ?? '';
  form.append(
    h(
      'div',
      { class: 'grid-2' },
      fc.add({ name: 'serial', label: 'Serial number', required: true, autocomplete: 'off', attrs: { spellcheck: 'false' } }).wrapper,
      fc.add({
        name: 'kind',
        label: 'Kind of device',
        type: 'select',
        required: true,
        value: '',
        options: [{ value: '', label: 'Choose…' }, ...KINDS.map((k) => ({ value: k, label: deviceKindLabel(k) }))],
      }).wrapper,
      fc.add({
        name: 'patient_id',
        label: 'Assign to patient (optional)',
        type: 'select',
        value: patients.some((p) => p.id === preselect) ? preselect : '',
        options: [
          { value: '', label: 'Not assigned yet' },
          ...[...patients]
            .sort((a, b) => a.family_name.localeCompare(b.family_name) || a.given_name.localeCompare(b.given_name))
            .map((p) => ({ value: p.id, label: `${p.family_name}, ${p.given_name} (${p.mrn})` })),
        ],
      }).wrapper,
    ),
    ...(patientsError ? [loadError(patientsError)] : []),
    h('div', { class: 'actions' }, submitButton('Add device'), h('a', { href: '/admin', class: 'button secondary' }, 'Cancel')),
  );
  fc.onSubmit(async () => {
    const created = await api<DeviceCreated>('/devices', {
      body: { serial: fc.value('serial'), kind: fc.value('kind'), patient_id: fc.optional('patient_id') },
    });
    const acl = Array.isArray(created.acl_lines) ? created.acl_lines.join('\n') : String(created.acl_lines ?? '');
    form.hidden = true;
    replaceChildren(
      result,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'device-created-heading' },
        h('h2', { id: 'device-created-heading', tabindex: '-1' }, `Device ${created.device.serial} added`),
        h('p', { class: 'alert warning' }, h('strong', null, 'The MQTT password is shown only this once.'), ' Copy it into the device now.'),
        created.broker_updated
          ? h('p', { class: 'alert success' }, 'The MQTT broker already knows this device: it can connect now.')
          : h('p', { class: 'alert warning' }, 'The server could not update the MQTT broker: add the password-file and ACL lines below to Mosquitto and reload it.'),
        definitionList([
          ['Kind', deviceKindLabel(created.device.kind)],
          ['Serial', h('span', { class: 'mono' }, created.device.serial)],
          ['MQTT username', h('span', { class: 'mono' }, created.mqtt_username)],
        ]),
        copyField('MQTT password', created.mqtt_password, 'Copy password'),
        copyField('Password file line', created.password_file_line, 'Copy line'),
        copyField('ACL lines', acl, 'Copy ACL lines', { multiline: true }),
        h(
          'div',
          { class: 'actions' },
          h('a', { href: '/admin/devices/new', class: 'button secondary' }, 'Add another device'),
          created.device.patient_id ? h('a', { href: `/patients/${encodeURIComponent(created.device.patient_id)}`, class: 'button secondary' }, 'Open patient') : null,
          h('a', { href: '/admin', class: 'button secondary' }, 'Back to admin'),
        ),
      ),
    );
    result.querySelector<HTMLElement>('h2')?.focus();
  });
  const heading = pageHeading('Add device');
  heading.querySelector('h1')!.id = 'add-device-heading';
  replaceChildren(ctx.main, h('p', { class: 'breadcrumb' }, h('a', { href: '/admin' }, 'Admin'), ' / Add device'), heading, result, form);
}
