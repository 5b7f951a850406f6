import { api } from '../api';
import { h, replaceChildren } from '../dom';
import type { Patient } from '../types';
import { empty, isAbort, loadError, pageHeading, table, type PageContext } from '../ui';

const SEX_LABEL: Record<string, string> = { female: 'Female', male: 'Male', other: 'Other', unknown: 'Unknown' };

export function sexLabel(sex: string): string {
  return SEX_LABEL[sex] ?? sex;
}

export async function patientsPage(ctx: PageContext): Promise<void> {
  ctx.title('Patients');
  const initial = ctx.query.get('q') ?? '';
  const input = h('input', { id: 'patient-search', type: 'search', name: 'q', value: initial, autocomplete: 'off', 'aria-describedby': 'patient-search-hint' });
  const results = h('div', { 'aria-live': 'polite' });
  const count = h('p', { class: 'muted', role: 'status' });
  const form = h(
    'form',
    { role: 'search', class: 'search-form', 'aria-label': 'Patients' },
    h('label', { for: 'patient-search' }, 'Search patients'),
    h('p', { id: 'patient-search-hint', class: 'hint' }, 'Name, MRN, email or phone.'),
    h('div', { class: 'search-row' }, input, h('button', { type: 'submit', class: 'button primary' }, 'Search')),
  );

  replaceChildren(
    ctx.main,
    pageHeading(
      'Patients',
      ctx.me?.role === 'admin' ? h('a', { href: '/admin/patients/new', class: 'button secondary' }, 'Add patient') : null,
    ),
    ctx.me?.role === 'clinician' ? h('p', { class: 'muted' }, 'Patients whose care team you are on.') : null,
    form,
    count,
    results,
  );

  let inflight: AbortController | null = null;
  const search = async (q: string) => {
    inflight?.abort();
    const ac = new AbortController();
    inflight = ac;
    ctx.signal.addEventListener('abort', () => ac.abort(), { once: true });
    const url = q ? `/patients?q=${encodeURIComponent(q)}` : '/patients';
    if (location.pathname + location.search !== url) history.replaceState(null, '', url);
    try {
      const list = await api<Patient[]>('/patients', { query: { q }, signal: ac.signal });
      if (ac.signal.aborted) return;
      count.textContent = `${list.length} patient${list.length === 1 ? '' : 's'}${q ? ` matching “${q}”` : ''}.`;
      if (list.length === 0) {
        replaceChildren(results, empty(q ? 'No patients match this search.' : 'No patients yet.'));
        return;
      }
      replaceChildren(
        results,
        table(
          'Patients',
          [
            { header: 'Name', cell: (p) => h('a', { href: `/patients/${encodeURIComponent(p.id)}` }, `${p.family_name}, ${p.given_name}`) },
            { header: 'MRN', cell: (p) => h('span', { class: 'mono' }, p.mrn) },
            { header: 'Date of birth', cell: (p) => p.birth_date, className: 'nowrap' },
            { header: 'Sex', cell: (p) => sexLabel(p.sex) },
            { header: 'Contact', cell: (p) => [p.email, p.phone].filter(Boolean).join(' · ') || '—' },
          ],
          list,
          { captionHidden: true },
        ),
      );
    } catch (err) {
      if (isAbort(err)) return;
      count.textContent = '';
      replaceChildren(results, loadError(err));
    }
  };

  let timer: number | undefined;
  input.addEventListener('input', () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => void search(input.value.trim()), 300);
  });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    window.clearTimeout(timer);
    void search(input.value.trim());
  });
  await search(initial.trim());
}
