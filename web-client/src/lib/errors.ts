// The server's error envelope and how the client presents it.

export interface ApiErrorBody {
  code: string;
  message: string;
  request_id?: string | null;
  field?: string | null;
  valid_from?: string | null;
  [extra: string]: unknown;
}

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | null;
  readonly requestId: string | null;
  readonly retryAfterSeconds: number | null;
  readonly body: ApiErrorBody;

  constructor(status: number, body: ApiErrorBody, retryAfterSeconds: number | null = null, requestId: string | null = null) {
    super(body.message || body.code);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.code;
    this.field = typeof body.field === 'string' && body.field !== '' ? body.field : null;
    this.requestId = (typeof body.request_id === 'string' ? body.request_id : null) ?? requestId;
    this.retryAfterSeconds = retryAfterSeconds;
    this.body = body;
  }
}

/** Codes the client makes up itself for failures that never reached a JSON answer. */
export const NETWORK_ERROR = 'network_error';

const GENERIC_BY_STATUS: Record<number, string> = {
  400: 'malformed_json',
  401: 'unauthenticated',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  422: 'validation_failed',
  429: 'rate_limited',
};

/**
 * Reads an error answer. The server always sends the JSON envelope, but a proxy or a
 * crash may not: anything else becomes a generic body keyed by HTTP status.
 */
export function parseErrorBody(status: number, text: string): ApiErrorBody {
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { code?: unknown }).code === 'string') {
      const body = parsed as ApiErrorBody;
      return { ...body, message: typeof body.message === 'string' ? body.message : '' };
    }
  } catch {
    // not JSON
  }
  return {
    code: GENERIC_BY_STATUS[status] ?? (status >= 500 ? 'internal' : `http_${status}`),
    message: '',
    field: null,
  };
}

/** Parses a Retry-After header (seconds or an HTTP date) into whole seconds from `nowMs`. */
export function parseRetryAfter(value: string | null, nowMs: number = Date.now()): number | null {
  if (value == null || value.trim() === '') return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return null;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

/**
 * Which form control an error belongs next to. `field` is the JSON field the server names
 * (possibly as a JSON pointer "/birth_date" or a path "body.birth_date" or "reason[0]");
 * `controls` are the names of the form's controls; `aliases` maps JSON fields that a form
 * shows under another control (e.g. the appointment's `start` is entered as date + time).
 * Returns null when the error belongs in the form's general error area.
 */
export function fieldForError(
  field: string | null | undefined,
  controls: readonly string[],
  aliases: Readonly<Record<string, string>> = {},
): string | null {
  if (!field) return null;
  const candidates: string[] = [field];
  const normalised = field
    .replace(/^\$\.?/, '')
    .replace(/^\//, '')
    .replace(/\//g, '.')
    .replace(/\[\d+\]/g, '')
    .replace(/^body\./, '');
  candidates.push(normalised);
  const segments = normalised.split('.').filter((s) => s !== '' && !/^\d+$/.test(s));
  if (segments.length > 0) candidates.push(segments[segments.length - 1]!);
  for (const c of candidates) {
    if (controls.includes(c)) return c;
    const alias = aliases[c];
    if (alias && controls.includes(alias)) return alias;
  }
  return null;
}

/**
 * A message shown next to its field need not repeat the field's name: the server may say
 * "password: must be at least 12 characters"; next to the password box that becomes
 * "Must be at least 12 characters".
 */
export function messageForField(message: string, field: string | null | undefined): string {
  let text = message.trim();
  if (field) {
    const names = new Set([field, field.split(/[./]/).filter(Boolean).pop() ?? field]);
    for (const name of names) {
      const prefix = `${name}:`;
      if (text.toLowerCase().startsWith(prefix.toLowerCase())) {
        text = text.slice(prefix.length).trim();
        break;
      }
    }
  }
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export interface MessageContext {
  /** Formats an instant for people (used for `valid_from`). */
  formatInstant?: (iso: string) => string;
}

/** A short, plain-language message for an error, for staff and patients alike. */
export function messageForError(err: unknown, ctx: MessageContext = {}): string {
  if (!(err instanceof ApiError)) {
    if (err instanceof Error && err.message) return err.message;
    return 'Something went wrong. Please try again.';
  }
  const serverText = err.message && err.message !== err.code ? err.message : '';
  switch (err.code) {
    case NETWORK_ERROR:
      return 'The server cannot be reached. Check the connection and try again.';
    case 'invalid_credentials':
      return 'The email or password is not correct.';
    case 'invalid_totp':
    case 'invalid_code':
      return 'That code is not correct. Check your authenticator app and try again.';
    case 'too_many_attempts':
    case 'rate_limited': {
      const wait = err.retryAfterSeconds;
      const base = 'Too many attempts.';
      if (wait == null) return `${base} Please wait a little and try again.`;
      if (wait < 90) return `${base} Please try again in ${wait} second${wait === 1 ? '' : 's'}.`;
      return `${base} Please try again in ${Math.ceil(wait / 60)} minutes.`;
    }
    case 'unauthenticated':
      return 'Your session has ended. Please sign in again.';
    case 'forbidden':
      return 'You do not have permission to do that.';
    case 'not_found':
      return serverText || 'That record was not found.';
    case 'appointment_overlap':
      return serverText || 'The clinician already has an appointment at that time.';
    case 'invalid_transition':
      return serverText || 'That status change is not allowed any more. Reload to see the current status.';
    case 'note_signed':
      return 'This note has been signed and can no longer be edited. Add an amendment instead.';
    case 'duplicate':
      return serverText || 'A record with these details already exists.';
    case 'payload_too_large':
      return 'That is too much text to send at once.';
    case 'join_link_early': {
      const from = typeof err.body.valid_from === 'string' ? err.body.valid_from : null;
      if (from && ctx.formatInstant) return `This visit link is not open yet. It opens at ${ctx.formatInstant(from)}.`;
      return 'This visit link is not open yet. Please come back closer to your appointment time.';
    }
    case 'join_link_expired':
      return 'This visit link has expired. Please contact the clinic for a new link.';
    case 'invalid_join_link':
      return 'This visit link is not valid. Check that you opened the whole link from your message, or contact the clinic.';
    case 'internal':
      return `Something went wrong on the server.${err.requestId ? ` (Reference: ${err.requestId})` : ''}`;
    default:
      return serverText || `The request failed (${err.code}).`;
  }
}
