// A tiny element builder. Text is always set as text (never parsed as HTML), and no
// inline styles are made: the server's CSP forbids them.

export type Child = Node | string | number | null | undefined | false | Child[];

type Listener = (ev: never) => void;
export type Attrs = Record<string, string | number | boolean | null | undefined | Listener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attrs | null, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'style') throw new Error('inline styles are not allowed (CSP); use a class');
      if (key.startsWith('on') && typeof value === 'function') {
        el.addEventListener(key.slice(2).toLowerCase(), value as EventListener);
      } else if (key === 'value' && (el instanceof HTMLInputElement || el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement)) {
        el.setAttribute('value', String(value));
        el.value = String(value);
      } else if (value === true) {
        el.setAttribute(key, '');
      } else {
        el.setAttribute(key, String(value));
      }
    }
  }
  append(el, children);
  return el;
}

export function append(parent: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else if (c instanceof Node) parent.appendChild(c);
    else parent.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function replaceChildren(el: Element, ...children: Child[]): void {
  clear(el);
  append(el, children);
}

let idCounter = 0;
export function uid(prefix: string): string {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

/** An in-app link; the router handles the click without a page load. */
export function link(href: string, text: Child, attrs: Attrs = {}): HTMLAnchorElement {
  return h('a', { href, ...attrs }, text);
}

/** Copies text to the clipboard; falls back to a selection + execCommand for old browsers. */
export async function copyText(text: string, fallbackInput?: HTMLInputElement | HTMLTextAreaElement): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall through
  }
  if (fallbackInput) {
    fallbackInput.focus();
    fallbackInput.select();
    try {
      return document.execCommand('copy');
    } catch {
      return false;
    }
  }
  return false;
}

/** A read-only text box with a copy button and a polite status line. */
export function copyField(label: string, value: string, buttonText: string, opts: { multiline?: boolean; testid?: string } = {}): HTMLElement {
  const id = uid('copy');
  const status = h('span', { class: 'copy-status', role: 'status', 'aria-live': 'polite' });
  const control = opts.multiline
    ? h('textarea', { id, readonly: true, rows: Math.min(8, value.split('\n').length + 1), class: 'mono', spellcheck: 'false' })
    : h('input', { id, type: 'text', readonly: true, class: 'mono', spellcheck: 'false', value });
  if (control instanceof HTMLTextAreaElement) control.value = value;
  const button = h(
    'button',
    {
      type: 'button',
      class: 'button secondary',
      'data-testid': opts.testid,
      onclick: async () => {
        const ok = await copyText(value, control);
        status.textContent = ok ? 'Copied.' : 'Copy failed: select the text and copy it by hand.';
      },
    },
    buttonText,
  );
  return h('div', { class: 'field copy-field' }, h('label', { for: id }, label), h('div', { class: 'copy-row' }, control, button), status);
}

export function spinner(text = 'Loading…'): HTMLElement {
  return h('p', { class: 'loading', role: 'status' }, text);
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element (attributes only, never `style`: the CSP forbids it). */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number | null | undefined> = {}, ...children: SVGElement[]): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === 'style') throw new Error('inline styles are not allowed (CSP); use a class');
    el.setAttribute(key, String(value));
  }
  for (const c of children) el.appendChild(c);
  return el;
}
