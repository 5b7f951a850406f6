// Accessible form building: labelled controls, errors next to the field (by the error's
// `field`), and a general error area with role="alert".
import { fieldForError, messageForError, messageForField, type MessageContext } from './lib/errors';
import { h, uid, type Attrs, type Child } from './dom';

export interface Option {
  value: string;
  label: string;
}

export interface FieldSpec {
  name: string;
  label: string;
  type?: 'text' | 'email' | 'password' | 'date' | 'time' | 'number' | 'tel' | 'search' | 'datetime-local' | 'select' | 'textarea';
  required?: boolean;
  value?: string;
  hint?: string;
  options?: Option[];
  autocomplete?: string;
  attrs?: Attrs;
}

export interface FieldParts {
  wrapper: HTMLElement;
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
  error: HTMLElement;
}

export function field(spec: FieldSpec): FieldParts {
  const id = uid(`f-${spec.name}`);
  const errorId = `${id}-error`;
  const hintId = spec.hint ? `${id}-hint` : undefined;
  const common: Attrs = {
    id,
    name: spec.name,
    required: spec.required,
    'aria-describedby': hintId,
    autocomplete: spec.autocomplete,
    ...spec.attrs,
  };
  let control: FieldParts['control'];
  if (spec.type === 'select') {
    const select = h('select', common);
    for (const o of spec.options ?? []) {
      select.appendChild(h('option', { value: o.value, selected: o.value === spec.value }, o.label));
    }
    if (spec.value !== undefined) select.value = spec.value;
    control = select;
  } else if (spec.type === 'textarea') {
    const ta = h('textarea', { rows: 5, ...common });
    ta.value = spec.value ?? '';
    control = ta;
  } else {
    control = h('input', { type: spec.type ?? 'text', value: spec.value, ...common });
  }
  const error = h('p', { id: errorId, class: 'field-error', hidden: true });
  // Optional fields say so in their label ("Email (optional)"); required ones are the norm.
  const label = h('label', { for: id }, spec.label);
  const wrapper = h(
    'div',
    { class: 'field', 'data-field': spec.name },
    label,
    hintId ? h('p', { id: hintId, class: 'hint' }, spec.hint) : null,
    control,
    error,
  );
  return { wrapper, control, error };
}

export interface FormOptions {
  /** JSON fields the form shows under another control, e.g. {start: 'date'}. */
  aliases?: Record<string, string>;
  messages?: MessageContext;
}

export class FormController {
  readonly form: HTMLFormElement;
  readonly general: HTMLElement;
  private readonly fields = new Map<string, FieldParts>();
  private readonly opts: FormOptions;

  constructor(form: HTMLFormElement, opts: FormOptions = {}) {
    this.form = form;
    this.opts = opts;
    form.noValidate = true;
    this.general = h('div', { class: 'form-alert', role: 'alert' });
    form.prepend(this.general);
  }

  add(spec: FieldSpec): FieldParts {
    const parts = field(spec);
    this.fields.set(spec.name, parts);
    return parts;
  }

  control(name: string): FieldParts['control'] {
    const f = this.fields.get(name);
    if (!f) throw new Error(`no field ${name}`);
    return f.control;
  }

  value(name: string): string {
    return this.control(name).value.trim();
  }

  /** Value, or undefined when empty (for optional JSON fields). */
  optional(name: string): string | undefined {
    const v = this.value(name);
    return v === '' ? undefined : v;
  }

  clearErrors(): void {
    this.general.replaceChildren();
    for (const [, f] of this.fields) {
      f.error.textContent = '';
      f.error.hidden = true;
      f.control.removeAttribute('aria-invalid');
      const described = (f.control.getAttribute('aria-describedby') ?? '').split(' ').filter((x) => x && x !== f.error.id);
      if (described.length) f.control.setAttribute('aria-describedby', described.join(' '));
      else f.control.removeAttribute('aria-describedby');
    }
  }

  fieldError(name: string, message: string): void {
    const f = this.fields.get(name);
    if (!f) {
      this.generalError(message);
      return;
    }
    f.error.textContent = messageForField(message, null);
    f.error.hidden = false;
    f.control.setAttribute('aria-invalid', 'true');
    const described = (f.control.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
    if (!described.includes(f.error.id)) described.push(f.error.id);
    f.control.setAttribute('aria-describedby', described.join(' '));
  }

  generalError(message: Child): void {
    this.general.replaceChildren(h('p', null, message));
  }

  /** Shows an error from the server next to its field (or in the general area) and focuses it. */
  showError(err: unknown): void {
    const message = messageForError(err, this.opts.messages);
    const errField = (err as { field?: string | null } | null)?.field ?? null;
    const target = fieldForError(errField, [...this.fields.keys()], this.opts.aliases);
    if (target) {
      this.fieldError(target, messageForField(message, errField));
      this.generalError('Please correct the highlighted field.');
      this.control(target).focus();
    } else {
      this.generalError(message);
      this.general.setAttribute('tabindex', '-1');
      this.general.focus();
    }
  }

  /** Checks required fields (and email/number formats); shows errors and focuses the first. */
  validate(): boolean {
    let first: FieldParts['control'] | null = null;
    for (const [name, f] of this.fields) {
      const c = f.control;
      const v = c.value.trim();
      let msg: string | null = null;
      if (c.required && v === '') msg = 'This field is required.';
      else if (c instanceof HTMLInputElement && v !== '' && !c.checkValidity()) {
        if (c.type === 'email') msg = 'Enter an email address like name@example.org.';
        else if (c.validity.rangeUnderflow || c.validity.rangeOverflow) msg = `Enter a value between ${c.min || '…'} and ${c.max || '…'}.`;
        else if (c.validity.tooShort) msg = `Enter at least ${c.minLength} characters.`;
        else msg = c.validationMessage || 'This value is not valid.';
      }
      if (msg) {
        this.fieldError(name, msg);
        first ??= c;
      }
    }
    if (first) {
      this.generalError('Please correct the highlighted fields.');
      first.focus();
      return false;
    }
    return true;
  }

  setBusy(busy: boolean): void {
    this.form.setAttribute('aria-busy', busy ? 'true' : 'false');
    for (const b of this.form.querySelectorAll<HTMLButtonElement>('button[type="submit"]')) b.disabled = busy;
  }

  /** Runs `action` on submit with validation, busy state and error display. */
  onSubmit(action: () => Promise<void>): void {
    this.form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (this.form.getAttribute('aria-busy') === 'true') return;
      this.clearErrors();
      if (!this.validate()) return;
      this.setBusy(true);
      try {
        await action();
      } catch (err) {
        if (err instanceof DOMException && err.name === 'AbortError') return;
        this.showError(err);
      } finally {
        this.setBusy(false);
      }
    });
  }
}

export function submitButton(text: string): HTMLButtonElement {
  return h('button', { type: 'submit', class: 'button primary' }, text);
}
