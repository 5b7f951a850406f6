import { privacyCard } from './patient-privacy';
import { api } from '../api';
import { appointmentTable } from '../appointments';
import { copyField, h, replaceChildren, type Child } from '../dom';
import { FormController, submitButton } from '../forms';
import { messageForError } from '../lib/errors';
import { formatInstant, localClock, localDay } from '../lib/time';
import { isFinalStatus, kindLabel } from '../lib/transitions';
import { patientBody, patientFields } from '../patient-form';
import type { Appointment, Consent, JoinLink, Me, Note, Patient, PatientDevice, Practitioner } from '../types';
import { definitionList, empty, loadError, pageHeading, patientDisplayName, section, table, type PageContext } from '../ui';
import { sexLabel } from './patients';

const DEVICE_KIND_LABEL: Record<string, string> = {
  pulse_oximeter: 'Pulse oximeter',
  blood_pressure_monitor: 'Blood pressure monitor',
  thermometer: 'Thermometer',
  scale: 'Scale',
  glucometer: 'Glucometer',
};

export function deviceKindLabel(kind: string): string {
  return DEVICE_KIND_LABEL[kind] ?? kind.replace(/_/g, ' ');
}

interface Live {
  status: HTMLElement;
  alert: HTMLElement;
  announce: (t: string) => void;
  fail: (t: string) => void;
}

function liveRegions(): Live {
  const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  return {
    status,
    alert,
    announce: (t) => {
      alert.replaceChildren();
      status.textContent = t;
    },
    fail: (t) => {
      status.textContent = '';
      alert.replaceChildren(h('p', null, t));
    },
  };
}

export async function patientPage(ctx: PageContext): Promise<void> {
  const id = ctx.params['id']!;
  const base = `/patients/${encodeURIComponent(id)}`;
  const me = ctx.me!;
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const isAdmin = me.role === 'admin';
  const when = (iso: string | null | undefined) => (iso ? formatInstant(iso, tz) : '—');

  let patient: Patient;
  try {
    patient = await api<Patient>(base, { signal: ctx.signal });
  } catch (err) {
    ctx.title('Patient');
    replaceChildren(ctx.main, pageHeading('Patient'), loadError(err), h('p', null, h('a', { href: '/patients' }, 'Back to patients')));
    return;
  }
  const name = patientDisplayName(patient);
  ctx.title(name);

  const live = liveRegions();
  const detailsCard = section('Details', 'details');
  const careCard = section('Care team', 'care-team');
  const devicesCard = section('Devices', 'devices');
  const apptCard = section('Appointments', 'appointments');
  const notesCard = section('Notes', 'notes');
  apptCard.classList.add('wide');
  notesCard.classList.add('wide');
  const consentsCard = section('Consents', 'consents');

  replaceChildren(
    ctx.main,
    h('p', { class: 'breadcrumb' }, h('a', { href: '/patients' }, 'Patients'), ' / ', name),
    pageHeading(
      name,
      h('p', { class: 'subtitle' }, 'MRN ', h('span', { class: 'mono' }, patient.mrn)),
      h('a', { class: 'button secondary', href: `${base}/chart` }, 'Vitals chart'),
      isAdmin ? h('a', { class: 'button primary', href: `/admin/appointments/new?patient_id=${encodeURIComponent(patient.id)}` }, 'Book appointment') : null,
    ),
    live.alert,
    live.status,
    h(
      'div',
      { class: 'cards' },
      detailsCard,
      careCard,
      apptCard,
      notesCard,
      devicesCard,
      consentsCard,
      isAdmin ? privacyCard(patient.id, patient.erased_at ?? null, () => ctx.navigate(`/patients/${encodeURIComponent(patient.id)}`, { replace: true })) : null,
    ),
  );

  // ---- details ----
  const drawDetails = () => {
    const items: [string, Child][] = [
      ['Given name', patient.given_name],
      ['Family name', patient.family_name],
      ['MRN', h('span', { class: 'mono' }, patient.mrn)],
      ['Date of birth', patient.birth_date],
      ['Sex', sexLabel(patient.sex)],
      ['Email', patient.email ?? ''],
      ['Phone', patient.phone ?? ''],
      ['Added', when(patient.created_at)],
    ];
    replaceChildren(
      detailsCard,
      h('h2', { id: 'details-heading' }, 'Details'),
      definitionList(items),
      isAdmin ? h('button', { type: 'button', class: 'button secondary', onclick: () => drawEdit() }, 'Edit details') : null,
    );
  };
  const drawEdit = () => {
    const form = h('form', { class: 'stack', 'aria-labelledby': 'details-heading' });
    const fc = new FormController(form);
    form.append(
      patientFields(fc, patient),
      h('div', { class: 'actions' }, submitButton('Save details'), h('button', { type: 'button', class: 'button secondary', onclick: () => drawDetails() }, 'Cancel')),
    );
    fc.onSubmit(async () => {
      patient = await api<Patient>(base, { method: 'PUT', body: patientBody(fc, { nulls: true }) });
      drawDetails();
      live.announce('Patient details saved.');
      detailsCard.querySelector<HTMLElement>('h2')?.focus();
    });
    replaceChildren(detailsCard, h('h2', { id: 'details-heading', tabindex: '-1' }, 'Edit details'), form);
    fc.control('given_name').focus();
  };
  drawDetails();

  // ---- load the rest in parallel; each section shows its own failure ----
  const [care, practitioners, devices, appts, notes, consents] = await Promise.allSettled([
    api<Practitioner[]>(`${base}/care-team`, { signal: ctx.signal }),
    isAdmin ? api<Practitioner[]>('/practitioners', { signal: ctx.signal }) : Promise.resolve([] as Practitioner[]),
    api<PatientDevice[]>(`${base}/devices`, { signal: ctx.signal }),
    api<Appointment[]>(`${base}/appointments`, { signal: ctx.signal }),
    // Visit notes are clinical records: only the patient's clinicians read them.
    isAdmin ? Promise.resolve(null) : api<Note[]>(`${base}/notes`, { signal: ctx.signal }),
    api<Consent[]>(`${base}/consents`, { signal: ctx.signal }),
  ]);
  if (ctx.signal.aborted) return;

  // ---- care team ----
  let team: Practitioner[] = care.status === 'fulfilled' ? care.value : [];
  const allPractitioners = practitioners.status === 'fulfilled' ? practitioners.value : [];
  const drawCare = () => {
    const body: Child[] = [h('h2', { id: 'care-team-heading' }, 'Care team')];
    if (care.status === 'rejected') body.push(loadError(care.reason));
    else if (team.length === 0) body.push(empty('No clinicians on the care team yet.'));
    else
      body.push(
        h(
          'ul',
          { class: 'plain-list' },
          team.map((p) =>
            h(
              'li',
              null,
              h('span', null, h('strong', null, p.name), p.qualification ? `, ${p.qualification}` : '', h('span', { class: 'muted' }, ` · ${p.email}`)),
              isAdmin
                ? h(
                    'button',
                    {
                      type: 'button',
                      class: 'button small danger',
                      'aria-label': `Remove ${p.name} from the care team`,
                      onclick: async () => {
                        if (!window.confirm(`Remove ${p.name} from ${name}'s care team?`)) return;
                        try {
                          await api<void>(`${base}/care-team/${encodeURIComponent(p.id)}`, { method: 'DELETE' });
                          team = team.filter((t) => t.id !== p.id);
                          drawCare();
                          live.announce(`${p.name} removed from the care team.`);
                        } catch (err) {
                          live.fail(messageForError(err));
                        }
                      },
                    },
                    'Remove',
                  )
                : null,
            ),
          ),
        ),
      );
    if (isAdmin && care.status === 'fulfilled') {
      const candidates = allPractitioners.filter((p) => p.active && !team.some((t) => t.id === p.id));
      if (practitioners.status === 'rejected') body.push(loadError(practitioners.reason));
      else if (candidates.length === 0) body.push(h('p', { class: 'muted' }, 'Every active clinician is on the care team.'));
      else {
        const form = h('form', { class: 'inline-form', 'aria-label': 'Add to care team' });
        const fc = new FormController(form);
        const sel = fc.add({
          name: 'practitioner_id',
          label: 'Add clinician',
          type: 'select',
          required: true,
          options: [{ value: '', label: 'Choose a clinician…' }, ...candidates.map((p) => ({ value: p.id, label: p.qualification ? `${p.name} (${p.qualification})` : p.name }))],
        });
        form.append(sel.wrapper, submitButton('Add to care team'));
        fc.onSubmit(async () => {
          const pid = fc.value('practitioner_id');
          await api<unknown>(`${base}/care-team`, { body: { practitioner_id: pid } });
          const added = allPractitioners.find((p) => p.id === pid);
          if (added) team = [...team, added];
          drawCare();
          live.announce(`${added?.name ?? 'Clinician'} added to the care team.`);
        });
        body.push(form);
      }
    }
    replaceChildren(careCard, ...body);
  };
  drawCare();

  // ---- devices ----
  if (devices.status === 'rejected') replaceChildren(devicesCard, h('h2', { id: 'devices-heading' }, 'Devices'), loadError(devices.reason));
  else
    replaceChildren(
      devicesCard,
      h('h2', { id: 'devices-heading' }, 'Devices'),
      devices.value.length === 0
        ? empty('No devices assigned.')
        : table(
            'Devices',
            [
              { header: 'Device', cell: (d) => deviceKindLabel(d.device.kind) },
              { header: 'Serial', cell: (d) => h('span', { class: 'mono' }, d.device.serial) },
              { header: 'Assigned', cell: (d) => when(d.assigned_from) },
              { header: 'Until', cell: (d) => (d.assigned_to ? when(d.assigned_to) : 'Current') },
            ],
            devices.value,
            { captionHidden: true },
          ),
      isAdmin ? h('p', null, h('a', { href: `/admin/devices/new?patient_id=${encodeURIComponent(patient.id)}` }, 'Add a device for this patient')) : null,
    );

  // ---- appointments ----
  const apptList = appts.status === 'fulfilled' ? appts.value : [];
  const joinLinkArea = h('div', { class: 'join-link-area' });
  if (appts.status === 'rejected') replaceChildren(apptCard, h('h2', { id: 'appointments-heading' }, 'Appointments'), loadError(appts.reason));
  else
    replaceChildren(
      apptCard,
      h('h2', { id: 'appointments-heading' }, 'Appointments'),
      h('p', { class: 'muted' }, `Times are in the clinic's time zone (${tz}).`),
      apptList.length === 0
        ? empty('No appointments.')
        : appointmentTable(apptList, {
            caption: `Appointments of ${name}`,
            showDate: true,
            showPractitioner: true,
            canTransition: true,
            announce: live.announce,
            alert: live.fail,
            extraActions: isAdmin
              ? (a) =>
                  a.kind === 'video' && !isFinalStatus(a.status)
                    ? h(
                        'button',
                        {
                          type: 'button',
                          class: 'button small secondary',
                          'aria-label': `New join link for ${localDay(a.start_local)} ${localClock(a.start_local, a.start, a.time_zone)}`,
                          onclick: async () => {
                            if (!window.confirm('Issue a new join link? The link sent before stops working.')) return;
                            try {
                              const link = await api<JoinLink>(`/appointments/${encodeURIComponent(a.id)}/join-link`, { method: 'POST' });
                              replaceChildren(
                                joinLinkArea,
                                h('p', null, `New join link for ${localDay(a.start_local)} ${localClock(a.start_local, a.start, a.time_zone)}. It works from ${when(link.valid_from)} until ${when(link.valid_until)}.`),
                                copyField('Join link', link.join_url, 'Copy join link'),
                              );
                              live.announce('A new join link was issued.');
                              joinLinkArea.querySelector<HTMLElement>('input')?.focus();
                            } catch (err) {
                              live.fail(messageForError(err));
                            }
                          },
                        },
                        'New join link',
                      )
                    : null
              : undefined,
          }),
      joinLinkArea,
    );

  // ---- notes ----
  if (notes.status === 'rejected') replaceChildren(notesCard, h('h2', { id: 'notes-heading' }, 'Notes'), loadError(notes.reason));
  else if (notes.value === null)
    replaceChildren(notesCard, h('h2', { id: 'notes-heading' }, 'Notes'), empty("Visit notes are visible to the patient's clinicians only."));
  else renderNotes(notesCard, notes.value, apptList, me, tz, live);

  // ---- consents ----
  if (consents.status === 'rejected') replaceChildren(consentsCard, h('h2', { id: 'consents-heading' }, 'Consents'), loadError(consents.reason));
  else
    replaceChildren(
      consentsCard,
      h('h2', { id: 'consents-heading' }, 'Consents'),
      consents.value.length === 0
        ? empty('No consents recorded.')
        : table(
            'Consents',
            [
              { header: 'Consent', cell: (c) => c.kind.replace(/_/g, ' ') },
              { header: 'Version', cell: (c) => c.text_version },
              { header: 'Accepted', cell: (c) => when(c.accepted_at) },
              { header: 'Recorded by', cell: (c) => c.recorded_by_role },
            ],
            consents.value,
            { captionHidden: true },
          ),
    );
}

function isAuthor(n: Note, me: Me): boolean {
  return n.author_id === me.id || (me.practitioner_id != null && n.author_id === me.practitioner_id);
}

function renderNotes(card: HTMLElement, initial: Note[], appts: Appointment[], me: Me, tz: string, live: Live): void {
  let notes = [...initial];
  const isClinician = me.role === 'clinician';
  const when = (iso: string | null) => (iso ? formatInstant(iso, tz) : '—');
  const apptLabel = (id: string) => {
    const a = appts.find((x) => x.id === id);
    return a ? `${localDay(a.start_local)} ${localClock(a.start_local, a.start, a.time_zone)} · ${kindLabel(a.kind)}${a.reason ? ` · ${a.reason}` : ''}` : 'Appointment';
  };

  const draw = (focusNoteId?: string) => {
    const sorted = [...notes].sort((a, b) => b.created_at.localeCompare(a.created_at));
    const list = h(
      'ol',
      { class: 'notes' },
      sorted.map((n) => h('li', { 'data-note-id': n.id }, noteView(n))),
    );
    replaceChildren(card, h('h2', { id: 'notes-heading' }, 'Notes'), isClinician ? newNoteForm() : null, sorted.length === 0 ? empty('No notes yet.') : list);
    if (focusNoteId) card.querySelector<HTMLElement>(`li[data-note-id="${CSS.escape(focusNoteId)}"] h3`)?.focus();
  };

  const upsert = (n: Note) => {
    const i = notes.findIndex((x) => x.id === n.id);
    if (i >= 0) notes[i] = n;
    else notes = [n, ...notes];
  };

  const noteView = (n: Note): HTMLElement => {
    const amended = n.amends_note_id ? notes.find((x) => x.id === n.amends_note_id) : undefined;
    const headingText = `${n.amends_note_id ? 'Amendment' : 'Note'} by ${n.author_name}`;
    const article = h(
      'article',
      { class: `note note-${n.status}` },
      h(
        'header',
        null,
        h('h3', { tabindex: '-1' }, headingText),
        h('span', { class: `badge note-${n.status}` }, n.status === 'draft' ? 'Draft' : 'Signed'),
      ),
      h(
        'p',
        { class: 'note-meta muted' },
        apptLabel(n.appointment_id),
        ' · written ',
        when(n.created_at),
        n.signed_at ? ` · signed ${when(n.signed_at)}` : '',
        amended ? ` · amends the note of ${when(amended.created_at)}` : n.amends_note_id ? ' · amends an earlier note' : '',
      ),
      h('div', { class: 'note-text' }, n.text),
    );
    const actions = h('div', { class: 'actions' });
    if (isClinician && n.status === 'draft' && isAuthor(n, me)) {
      actions.append(
        h('button', { type: 'button', class: 'button small secondary', onclick: () => editDraft(article, n) }, 'Edit draft'),
        h(
          'button',
          {
            type: 'button',
            class: 'button small primary',
            onclick: async () => {
              if (!window.confirm('Sign this note? A signed note can no longer be edited, only amended.')) return;
              try {
                upsert(await api<Note>(`/notes/${encodeURIComponent(n.id)}/sign`, { method: 'POST' }));
                draw(n.id);
                live.announce('Note signed.');
              } catch (err) {
                live.fail(messageForError(err));
              }
            },
          },
          'Sign note',
        ),
      );
    }
    if (isClinician && n.status === 'signed') {
      actions.append(h('button', { type: 'button', class: 'button small secondary', onclick: () => amend(article, n) }, 'Add amendment'));
    }
    if (actions.childElementCount) article.append(actions);
    return article;
  };

  const textForm = (label: string, initialText: string, submitText: string, onSave: (text: string) => Promise<void>, onCancel: () => void) => {
    const form = h('form', { class: 'stack' });
    const fc = new FormController(form);
    const f = fc.add({ name: 'text', label, type: 'textarea', required: true, value: initialText, attrs: { rows: 6 } });
    form.append(f.wrapper, h('div', { class: 'actions' }, submitButton(submitText), h('button', { type: 'button', class: 'button secondary', onclick: onCancel }, 'Cancel')));
    fc.onSubmit(() => onSave(fc.control('text').value));
    return { form, focus: () => f.control.focus() };
  };

  const editDraft = (article: HTMLElement, n: Note) => {
    const { form, focus } = textForm('Note text', n.text, 'Save draft', async (text) => {
      upsert(await api<Note>(`/notes/${encodeURIComponent(n.id)}`, { method: 'PUT', body: { text } }));
      draw(n.id);
      live.announce('Draft saved.');
    }, () => draw(n.id));
    // Take the note's own buttons away first: the form brings its own .actions.
    article.querySelector(':scope > .actions')?.remove();
    article.querySelector(':scope > .note-text')?.replaceWith(form);
    focus();
  };

  const amend = (article: HTMLElement, n: Note) => {
    const { form, focus } = textForm('Amendment', '', 'Add amendment', async (text) => {
      const created = await api<Note>(`/notes/${encodeURIComponent(n.id)}/amendments`, { body: { text } });
      upsert(created);
      draw(created.id);
      live.announce('Amendment added.');
    }, () => draw(n.id));
    article.querySelector(':scope > .actions')?.replaceWith(form);
    focus();
  };

  const newNoteForm = (): HTMLElement => {
    const usable = appts.filter((a) => a.status !== 'cancelled');
    if (usable.length === 0) return h('p', { class: 'muted' }, 'Notes are written for an appointment; this patient has none yet.');
    const sorted = [...usable].sort((a, b) => b.start.localeCompare(a.start));
    const details = h('details', { class: 'new-note' }, h('summary', null, 'Write a note'));
    const form = h('form', { class: 'stack' });
    const fc = new FormController(form);
    const sel = fc.add({
      name: 'appointment_id',
      label: 'Appointment',
      type: 'select',
      required: true,
      options: sorted.map((a) => ({ value: a.id, label: apptLabel(a.id) })),
      value: sorted[0]!.id,
    });
    const text = fc.add({ name: 'text', label: 'Note text', type: 'textarea', required: true, attrs: { rows: 6 } });
    form.append(sel.wrapper, text.wrapper, h('div', { class: 'actions' }, submitButton('Save as draft')));
    fc.onSubmit(async () => {
      const created = await api<Note>(`/appointments/${encodeURIComponent(fc.value('appointment_id'))}/notes`, { body: { text: fc.control('text').value } });
      upsert(created);
      draw(created.id);
      live.announce('Draft note saved. Sign it when it is complete.');
    });
    details.append(form);
    return details;
  };

  draw();
}
