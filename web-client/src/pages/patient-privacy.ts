// The data-protection card of a patient's page (admins): download the whole
// record for an access request, or erase the patient on a recorded request.
import { api, freshStaffAccessToken } from '../api';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { messageForError } from '../lib/errors';
import { section } from '../ui';

interface Erasure {
  received_on: string;
  reference: string;
  vitals: string;
  carried_out_at: string;
}

/** The card; `onErased` reloads the page once the identity is gone. */
export function privacyCard(patientId: string, erasedAt: string | null, onErased: () => void): HTMLElement {
  const card = section('Data protection', 'privacy');
  const heading = h('h2', { id: 'privacy-heading', tabindex: '-1' }, 'Data protection');
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  const base = `/patients/${encodeURIComponent(patientId)}`;

  const download = h('button', { type: 'button', class: 'button secondary' }, 'Download the whole record');
  download.addEventListener('click', async () => {
    download.disabled = true;
    alert.replaceChildren();
    try {
      const token = await freshStaffAccessToken();
      const res = await fetch(`/api/v1${base}/export`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      if (!res.ok) throw new Error(`the export failed (${res.status})`);
      const url = URL.createObjectURL(await res.blob());
      const a = h('a', { href: url, download: `patient-${patientId}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      alert.replaceChildren(h('p', null, messageForError(err)));
    } finally {
      download.disabled = false;
    }
  });

  if (erasedAt) {
    replaceChildren(card, heading, h('p', null, 'This patient was erased on their request; the record holds no identity.'), alert, download);
    void api<Erasure>(`${base}/erasure`)
      .then((e) => card.append(h('p', { class: 'muted' }, `Request ${e.reference} of ${e.received_on}; readings ${e.vitals}.`)))
      .catch(() => undefined);
    return card;
  }

  const form = h('form', { class: 'stack' });
  const fc = new FormController(form);
  const received = fc.add({ name: 'received_on', label: 'Request received on', type: 'date', required: true });
  const reference = fc.add({ name: 'reference', label: 'Request reference', required: true, hint: 'The ticket or letter number of the request (no personal data).' });
  const confirm = h('input', { type: 'checkbox', id: 'erase-confirm', required: true });
  form.append(
    received.wrapper,
    reference.wrapper,
    h('p', null, confirm, ' ', h('label', { for: 'erase-confirm' }, 'I understand that the patient’s identity, notes and (per the clinic’s setting) readings are removed for good.')),
    h('div', { class: 'actions' }, submitButton('Erase the patient')),
  );
  fc.onSubmit(async () => {
    await api<Erasure>(`${base}/erasure`, { body: { received_on: fc.value('received_on'), reference: fc.value('reference') } });
    onErased();
  });
  replaceChildren(
    card,
    heading,
    h('p', null, 'For an access or portability request: the record, notes and audit trail as one FHIR file.'),
    alert,
    download,
    h('details', null, h('summary', null, 'Erase on a recorded request…'), form),
  );
  return card;
}
