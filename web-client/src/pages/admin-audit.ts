import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { formatInstant, localDateTimeToRfc3339 } from '../lib/time';
import type { AuditEntry, User } from '../types';
import { empty, pageHeading, table, type PageContext } from '../ui';

const LIMITS = ['50', '100', '200', '500'];

/** "2026-11-23T09:30" (datetime-local, clinic time) → RFC 3339, or null when empty. */
function toInstant(value: string, tz: string): string | null {
  if (!value) return null;
  const [date, time] = value.split('T');
  return localDateTimeToRfc3339(date ?? '', (time ?? '').slice(0, 5), tz);
}

export async function auditPage(ctx: PageContext): Promise<void> {
  ctx.title('Audit log');
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const q = ctx.query;
  const form = h('form', { class: 'card filters', 'aria-labelledby': 'audit-filter-heading' });
  const fc = new FormController(form);
  form.append(
    h('h2', { id: 'audit-filter-heading' }, 'Filters'),
    h(
      'div',
      { class: 'grid-3' },
      fc.add({ name: 'patient_id', label: 'Patient ID', value: q.get('patient_id') ?? '', autocomplete: 'off', attrs: { spellcheck: 'false', class: 'mono' } }).wrapper,
      fc.add({ name: 'actor_id', label: 'Actor ID', hint: 'The user who acted.', value: q.get('actor_id') ?? '', autocomplete: 'off', attrs: { spellcheck: 'false', class: 'mono' } }).wrapper,
      fc.add({ name: 'limit', label: 'Show at most', type: 'select', value: LIMITS.includes(q.get('limit') ?? '') ? q.get('limit')! : '100', options: LIMITS.map((l) => ({ value: l, label: `${l} entries` })) }).wrapper,
      fc.add({ name: 'from', label: `From (${tz})`, type: 'datetime-local', value: q.get('from') ?? '' }).wrapper,
      fc.add({ name: 'to', label: `To (${tz})`, type: 'datetime-local', value: q.get('to') ?? '' }).wrapper,
    ),
    h('div', { class: 'actions' }, submitButton('Show entries'), h('a', { href: '/admin/audit', class: 'button secondary' }, 'Clear filters')),
  );
  fc.onSubmit(async () => {
    const params = new URLSearchParams();
    for (const name of ['patient_id', 'actor_id', 'from', 'to', 'limit']) {
      const v = fc.value(name);
      if (v) params.set(name, v);
    }
    for (const name of ['from', 'to']) {
      try {
        toInstant(fc.value(name), tz);
      } catch {
        fc.fieldError(name, 'Enter a valid date and time.');
        fc.control(name).focus();
        return;
      }
    }
    ctx.navigate(`/admin/audit?${params.toString()}`);
  });

  const results = h('div', { 'aria-live': 'polite' }, h('p', { class: 'loading' }, 'Loading entries…'));
  replaceChildren(ctx.main, h('p', { class: 'breadcrumb' }, h('a', { href: '/admin' }, 'Admin'), ' / Audit log'), pageHeading('Audit log'), form, results);

  let from: string | null = null;
  let to: string | null = null;
  try {
    from = toInstant(q.get('from') ?? '', tz);
    to = toInstant(q.get('to') ?? '', tz);
  } catch {
    replaceChildren(results, h('p', { class: 'alert error', role: 'alert' }, 'The date filter is not valid.'));
    return;
  }

  const [entriesR, usersR] = await Promise.allSettled([
    api<AuditEntry[]>('/audit', {
      signal: ctx.signal,
      query: { patient_id: q.get('patient_id'), actor_id: q.get('actor_id'), from, to, limit: fc.value('limit') },
    }),
    api<User[]>('/users', { signal: ctx.signal }),
  ]);
  if (ctx.signal.aborted) return;
  if (entriesR.status === 'rejected') {
    replaceChildren(results);
    fc.showError(entriesR.reason);
    return;
  }
  const names = new Map<string, string>();
  if (usersR.status === 'fulfilled') for (const u of usersR.value) names.set(u.id, u.name);
  const entries = entriesR.value;
  const filterLink = (param: string, value: string, text: string, label: string) => {
    const p = new URLSearchParams(q);
    p.set(param, value);
    return h('a', { href: `/admin/audit?${p.toString()}`, 'aria-label': label, title: label }, text);
  };
  replaceChildren(
    results,
    h('p', { class: 'muted', role: 'status' }, `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, newest first. Times in ${tz}.`),
    entries.length === 0
      ? empty('No entries match these filters.')
      : table(
          'Audit log entries',
          [
            { header: 'When', cell: (e) => formatInstant(e.at, tz), className: 'nowrap' },
            {
              header: 'Actor',
              cell: (e) => {
                if (!e.actor_id) return e.actor_role || '—';
                const who = names.get(e.actor_id) ?? e.actor_id;
                return [filterLink('actor_id', e.actor_id, who, `Show only entries by ${who}`), h('span', { class: 'muted' }, ` (${e.actor_role})`)];
              },
            },
            {
              header: 'Patient',
              cell: (e) =>
                e.patient_id
                  ? [
                      filterLink('patient_id', e.patient_id, 'Filter', `Show only entries about patient ${e.patient_id}`),
                      ' · ',
                      h('a', { href: `/patients/${encodeURIComponent(e.patient_id)}`, 'aria-label': `Open patient ${e.patient_id}`, title: e.patient_id }, 'Open'),
                    ]
                  : '—',
            },
            { header: 'Action', cell: (e) => e.action },
            { header: 'Resource', cell: (e) => h('span', { class: 'mono small' }, e.resource) },
            { header: 'Outcome', cell: (e) => h('span', { class: `badge outcome-${e.outcome === 'denied' ? 'denied' : 'allowed'}` }, e.outcome === 'denied' ? 'Denied' : 'Allowed') },
            { header: 'Request', cell: (e) => h('span', { class: 'mono small' }, e.request_id) },
            { header: 'Client', cell: (e) => h('span', { class: 'mono small' }, e.client_addr) },
          ],
          entries,
          { captionHidden: true },
        ),
  );
}
