import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { patientBody, patientFields } from '../patient-form';
import type { Patient } from '../types';
import { pageHeading, type PageContext } from '../ui';

export function newPatientPage(ctx: PageContext): void {
  ctx.title('Add patient');
  const form = h('form', { class: 'stack card', 'aria-labelledby': 'add-patient-heading' });
  const fc = new FormController(form);
  form.append(patientFields(fc), h('div', { class: 'actions' }, submitButton('Add patient'), h('a', { href: '/admin', class: 'button secondary' }, 'Cancel')));
  fc.onSubmit(async () => {
    const p = await api<Patient>('/patients', { body: patientBody(fc) });
    ctx.navigate(`/patients/${encodeURIComponent(p.id)}`, { flash: `Patient ${p.given_name} ${p.family_name} added.` });
  });
  const heading = pageHeading('Add patient');
  heading.querySelector('h1')!.id = 'add-patient-heading';
  replaceChildren(ctx.main, h('p', { class: 'breadcrumb' }, h('a', { href: '/admin' }, 'Admin'), ' / Add patient'), heading, h('p', { class: 'muted' }, 'All fields are required unless marked optional.'), form);
}
