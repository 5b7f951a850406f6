import { api, serverNowMs } from '../api';
import { copyField, h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { dateInZone, formatDayLabel, localClock, localDay, localDateTimeToRfc3339, NonexistentLocalTimeError, roundUpToStep, timeInZone } from '../lib/time';
import { kindLabel } from '../lib/transitions';
import type { Appointment, Patient, Practitioner } from '../types';
import { definitionList, loadError, pageHeading, type PageContext } from '../ui';

export async function newAppointmentPage(ctx: PageContext): Promise<void> {
  ctx.title('Book appointment');
  const tz = ctx.clinic?.time_zone;
  const crumbs = h('p', { class: 'breadcrumb' }, h('a', { href: '/admin' }, 'Admin'), ' / Book appointment');
  const heading = pageHeading('Book appointment');
  heading.querySelector('h1')!.id = 'book-heading';
  if (!tz) {
    replaceChildren(ctx.main, crumbs, heading, h('div', { class: 'alert error', role: 'alert' }, h('p', null, "The clinic's time zone could not be loaded. Reload the page.")));
    return;
  }

  const [patientsR, practitionersR] = await Promise.allSettled([
    api<Patient[]>('/patients', { signal: ctx.signal }),
    api<Practitioner[]>('/practitioners', { signal: ctx.signal }),
  ]);
  if (ctx.signal.aborted) return;
  if (patientsR.status === 'rejected' || practitionersR.status === 'rejected') {
    replaceChildren(ctx.main, crumbs, heading, loadError(patientsR.status === 'rejected' ? patientsR.reason : (practitionersR as PromiseRejectedResult).reason));
    return;
  }
  const patients = [...patientsR.value].sort((a, b) => a.family_name.localeCompare(b.family_name) || a.given_name.localeCompare(b.given_name));
  const practitioners = practitionersR.value.filter((p) => p.active).sort((a, b) => a.name.localeCompare(b.name));

  // Default start: the next quarter hour at least 15 minutes from now, in the clinic's zone.
  const nextSlot = roundUpToStep(serverNowMs() + 15 * 60_000, 15);
  const preselectPatient = ctx.query.get('patient_id') ?? '';
  const preselectPractitioner = ctx.query.get('practitioner_id') ?? (practitioners.length === 1 ? practitioners[0]!.id : '');

  const result = h('div', { class: 'result' });
  const form = h('form', { class: 'stack card', 'aria-labelledby': 'book-heading' });
  const fc = new FormController(form, { aliases: { start: 'time' } });
  form.append(
    h(
      'div',
      { class: 'grid-2' },
      fc.add({
        name: 'patient_id',
        label: 'Patient',
        type: 'select',
        required: true,
        value: patients.some((p) => p.id === preselectPatient) ? preselectPatient : '',
        options: [{ value: '', label: patients.length ? 'Choose a patient…' : 'No patients yet' }, ...patients.map((p) => ({ value: p.id, label: `${p.family_name}, ${p.given_name} (${p.mrn})` }))],
      }).wrapper,
      fc.add({
        name: 'practitioner_id',
        label: 'Clinician',
        type: 'select',
        required: true,
        value: practitioners.some((p) => p.id === preselectPractitioner) ? preselectPractitioner : '',
        options: [
          { value: '', label: practitioners.length ? 'Choose a clinician…' : 'No clinicians yet' },
          ...practitioners.map((p) => ({ value: p.id, label: p.qualification ? `${p.name} (${p.qualification})` : p.name })),
        ],
      }).wrapper,
    ),
    h(
      'fieldset',
      { class: 'grid-3', 'aria-describedby': 'tz-hint' },
      h('legend', null, 'When'),
      h('p', { id: 'tz-hint', class: 'hint span-all' }, `Date and time in the clinic's time zone (${tz}).`),
      fc.add({ name: 'date', label: 'Date', type: 'date', required: true, value: dateInZone(nextSlot, tz) }).wrapper,
      fc.add({ name: 'time', label: 'Start time', type: 'time', required: true, value: timeInZone(nextSlot, tz), attrs: { step: 300 } }).wrapper,
      fc.add({ name: 'duration_minutes', label: 'Duration (minutes)', type: 'number', required: true, value: '30', attrs: { min: 5, max: 480, step: 5, inputmode: 'numeric' } }).wrapper,
    ),
    h(
      'div',
      { class: 'grid-2' },
      fc.add({
        name: 'kind',
        label: 'Kind',
        type: 'select',
        required: true,
        value: 'video',
        options: [
          { value: 'video', label: 'Video visit' },
          { value: 'in_person', label: 'In person' },
        ],
      }).wrapper,
      fc.add({ name: 'reason', label: 'Reason', required: true, autocomplete: 'off', hint: 'Shown to the clinician, e.g. “Follow-up after discharge”.' }).wrapper,
    ),
    h('div', { class: 'actions' }, submitButton('Book appointment'), h('a', { href: '/admin', class: 'button secondary' }, 'Cancel')),
  );

  fc.onSubmit(async () => {
    let start: string;
    try {
      start = localDateTimeToRfc3339(fc.value('date'), fc.value('time'), tz);
    } catch (err) {
      if (err instanceof NonexistentLocalTimeError) {
        fc.fieldError('time', 'The clocks change at that time, so it does not exist on that day. Choose another time.');
      } else {
        fc.fieldError('date', 'Enter a valid date and time.');
      }
      fc.generalError('Please correct the highlighted field.');
      return;
    }
    const appt = await api<Appointment>('/appointments', {
      body: {
        patient_id: fc.value('patient_id'),
        practitioner_id: fc.value('practitioner_id'),
        start,
        duration_minutes: Number(fc.value('duration_minutes')),
        kind: fc.value('kind'),
        reason: fc.value('reason'),
      },
    });
    form.hidden = true;
    const day = localDay(appt.start_local);
    replaceChildren(
      result,
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'booked-heading' },
        h('h2', { id: 'booked-heading', tabindex: '-1' }, 'Appointment booked'),
        definitionList([
          ['Patient', h('a', { href: `/patients/${encodeURIComponent(appt.patient_id)}` }, appt.patient_name)],
          ['Clinician', appt.practitioner_name],
          ['Date', day ? formatDayLabel(day) : appt.start_local],
          ['Time', `${localClock(appt.start_local, appt.start, tz)}–${localClock(appt.end_local, appt.end, tz)} (${appt.time_zone || tz})`],
          ['Kind', kindLabel(appt.kind)],
          ['Reason', appt.reason],
        ]),
        appt.join_url
          ? h(
              'div',
              null,
              copyField('Join link', appt.join_url, 'Copy join link'),
              h('p', { class: 'hint' }, 'Send this link to the patient (for example by email or text message). It is their way into the video visit; anyone with the link can join, so send it only to the patient.'),
            )
          : h('p', null, 'In-person visit: no join link is needed.'),
        h(
          'div',
          { class: 'actions' },
          h('a', { href: '/admin/appointments/new', class: 'button secondary' }, 'Book another'),
          h('a', { href: `/patients/${encodeURIComponent(appt.patient_id)}`, class: 'button secondary' }, 'Open patient'),
          h('a', { href: day ? `/today?date=${day}` : '/today', class: 'button secondary' }, 'Day view'),
        ),
      ),
    );
    result.querySelector<HTMLElement>('h2')?.focus();
  });

  replaceChildren(ctx.main, crumbs, heading, result, form);
}
