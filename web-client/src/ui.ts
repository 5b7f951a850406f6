// Page-level building blocks shared by the pages.
import { messageForError } from './lib/errors';
import { statusLabel } from './lib/transitions';
import { h, type Child } from './dom';
import type { Clinic, Me } from './types';

export interface PageContext {
  main: HTMLElement;
  params: Record<string, string>;
  query: URLSearchParams;
  signal: AbortSignal;
  me: Me | null;
  clinic: Clinic | null;
  navigate: (path: string, opts?: { replace?: boolean; flash?: string }) => void;
  /** Sets document.title ("<title> · Bedside"). */
  title: (title: string) => void;
}

export type Page = (ctx: PageContext) => Promise<void> | void;

export function pageHeading(text: string, ...after: Child[]): HTMLElement {
  return h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, text), ...after);
}

export function statusBadge(status: string): HTMLElement {
  return h('span', { class: `badge status-${status.replace(/[^a-z_]/g, '')}` }, statusLabel(status));
}

export function loadError(err: unknown): HTMLElement {
  return h('div', { class: 'alert error', role: 'alert' }, h('p', null, messageForError(err)));
}

export function empty(text: string): HTMLElement {
  return h('p', { class: 'empty' }, text);
}

export interface Column<T> {
  header: string;
  cell: (row: T) => Child;
  className?: string;
}

export function table<T>(caption: string, columns: Column<T>[], rows: T[], opts: { captionHidden?: boolean; rowAttrs?: (row: T) => Record<string, string> } = {}): HTMLElement {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      null,
      h('caption', { class: opts.captionHidden ? 'visually-hidden' : undefined }, caption),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.className }, c.header)))),
      h(
        'tbody',
        null,
        rows.map((r) => h('tr', opts.rowAttrs ? opts.rowAttrs(r) : null, columns.map((c) => h('td', { class: c.className }, c.cell(r))))),
      ),
    ),
  );
}

export function section(title: string, id: string, ...children: Child[]): HTMLElement {
  const headingId = `${id}-heading`;
  return h('section', { class: 'card', 'aria-labelledby': headingId }, h('h2', { id: headingId }, title), ...children);
}

export function definitionList(items: [string, Child][]): HTMLElement {
  return h(
    'dl',
    { class: 'details' },
    items.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v === '' || v === null || v === undefined ? '—' : v))),
  );
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}

export function patientDisplayName(p: { given_name: string; family_name: string }): string {
  return `${p.given_name} ${p.family_name}`.trim();
}
