import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import type { User } from '../types';
import { definitionList, pageHeading, type PageContext } from '../ui';

export function newUserPage(ctx: PageContext): void {
  ctx.title('Add user');
  const result = h('div', { role: 'status', class: 'result' });
  const form = h('form', { class: 'stack card', 'aria-labelledby': 'add-user-heading' });
  const fc = new FormController(form);
  const role = fc.add({
    name: 'role',
    label: 'Role',
    type: 'select',
    required: true,
    value: 'clinician',
    options: [
      { value: 'clinician', label: 'Clinician' },
      { value: 'admin', label: 'Administrator' },
    ],
  });
  const qualification = fc.add({ name: 'qualification', label: 'Qualification (optional)', hint: 'For clinicians, e.g. “MD, General practice” or “RN”.', autocomplete: 'off' });
  const syncRole = () => {
    qualification.wrapper.hidden = role.control.value !== 'clinician';
  };
  role.control.addEventListener('change', syncRole);
  form.append(
    h(
      'div',
      { class: 'grid-2' },
      fc.add({ name: 'name', label: 'Full name', required: true, autocomplete: 'off' }).wrapper,
      fc.add({ name: 'email', label: 'Email', type: 'email', required: true, autocomplete: 'off', attrs: { autocapitalize: 'off', spellcheck: 'false' } }).wrapper,
      role.wrapper,
      qualification.wrapper,
      fc.add({
        name: 'password',
        label: 'Initial password',
        type: 'password',
        required: true,
        autocomplete: 'new-password',
        hint: 'At least 12 characters. Give it to the person securely; they sign in with it.',
      }).wrapper,
    ),
    h('div', { class: 'actions' }, submitButton('Create user'), h('a', { href: '/admin', class: 'button secondary' }, 'Cancel')),
  );
  syncRole();
  fc.onSubmit(async () => {
    const isClinician = fc.value('role') === 'clinician';
    const user = await api<User>('/users', {
      body: {
        email: fc.value('email'),
        name: fc.value('name'),
        role: fc.value('role'),
        password: fc.control('password').value,
        qualification: isClinician ? fc.optional('qualification') : undefined,
      },
    });
    form.reset();
    syncRole();
    replaceChildren(
      result,
      h('div', { class: 'alert success' }, h('p', null, h('strong', null, `User ${user.name} created.`)), definitionList([
        ['Name', user.name],
        ['Email', user.email],
        ['Role', user.role === 'admin' ? 'Administrator' : 'Clinician'],
      ]), h('p', null, 'You can add another user below.')),
    );
    fc.control('name').focus();
  });
  const heading = pageHeading('Add user');
  heading.querySelector('h1')!.id = 'add-user-heading';
  replaceChildren(ctx.main, h('p', { class: 'breadcrumb' }, h('a', { href: '/admin' }, 'Admin'), ' / Add user'), heading, result, form);
}
