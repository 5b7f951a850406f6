// The patient form, used to add a patient and to edit one.
import { h } from './dom';
import type { FormController } from './forms';
import type { Patient } from './types';

export const SEX_OPTIONS = [
  { value: '', label: 'Choose…' },
  { value: 'female', label: 'Female' },
  { value: 'male', label: 'Male' },
  { value: 'other', label: 'Other' },
  { value: 'unknown', label: 'Unknown' },
];

export function patientFields(fc: FormController, initial?: Patient): HTMLElement {
  const f = (x: Parameters<FormController['add']>[0]) => fc.add(x).wrapper;
  return h(
    'div',
    { class: 'grid-2' },
    f({ name: 'given_name', label: 'Given name', required: true, value: initial?.given_name, autocomplete: 'off' }),
    f({ name: 'family_name', label: 'Family name', required: true, value: initial?.family_name, autocomplete: 'off' }),
    f({ name: 'mrn', label: 'MRN', hint: 'Medical record number', required: true, value: initial?.mrn, autocomplete: 'off' }),
    f({ name: 'birth_date', label: 'Date of birth', type: 'date', required: true, value: initial?.birth_date, attrs: { max: new Date().toISOString().slice(0, 10) } }),
    f({ name: 'sex', label: 'Sex', type: 'select', required: true, options: SEX_OPTIONS, value: initial?.sex ?? '' }),
    f({ name: 'email', label: 'Email (optional)', type: 'email', value: initial?.email ?? undefined, autocomplete: 'off' }),
    f({ name: 'phone', label: 'Phone (optional)', type: 'tel', value: initial?.phone ?? undefined, autocomplete: 'off' }),
  );
}

/** The JSON body; empty optional fields are left out (or sent as null with `nulls`, to clear them). */
export function patientBody(fc: FormController, opts: { nulls?: boolean } = {}): Record<string, string | null | undefined> {
  const opt = (name: string) => fc.optional(name) ?? (opts.nulls ? null : undefined);
  return {
    mrn: fc.value('mrn'),
    given_name: fc.value('given_name'),
    family_name: fc.value('family_name'),
    birth_date: fc.value('birth_date'),
    sex: fc.value('sex'),
    email: opt('email'),
    phone: opt('phone'),
  };
}
