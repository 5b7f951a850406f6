// JSON client for /api/v1 with bearer tokens and one automatic refresh on 401.
import { ApiError, NETWORK_ERROR, parseErrorBody, parseRetryAfter } from './lib/errors';
import { session } from './session';
import type { Clinic, Me, Tokens } from './types';

export const API_BASE = '/api/v1';

/** Which token a call carries: staff (refreshable), the patient's visit token, or none. */
export type AuthMode = 'staff' | 'visit' | 'none';

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  body?: unknown;
  query?: Record<string, string | number | null | undefined>;
  auth?: AuthMode;
  signal?: AbortSignal;
}

let onStaffSessionEnded: () => void = () => {};

/** Called once the staff session is gone for good (refresh failed): the app goes to /login. */
export function setStaffSessionEndedHandler(handler: () => void): void {
  onStaffSessionEnded = handler;
}

export function buildUrl(path: string, query?: RequestOptions['query']): string {
  let url = API_BASE + path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') params.set(k, String(v));
    }
    const qs = params.toString();
    if (qs) url += `?${qs}`;
  }
  return url;
}

function bearerFor(auth: AuthMode): string | null {
  if (auth === 'staff') return session.staff()?.access_token ?? null;
  if (auth === 'visit') return session.visit()?.access_token ?? null;
  return null;
}

async function send(path: string, opts: RequestOptions, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers['Authorization'] = `Bearer ${token}`;
  const init: RequestInit = {
    method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'),
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
  };
  if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
  if (opts.signal) init.signal = opts.signal;
  try {
    return await fetch(buildUrl(path, opts.query), init);
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e;
    throw new ApiError(0, { code: NETWORK_ERROR, message: 'The server cannot be reached.', field: null });
  }
}

async function toError(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  return new ApiError(
    res.status,
    parseErrorBody(res.status, text),
    parseRetryAfter(res.headers.get('Retry-After')),
    res.headers.get('x-request-id'),
  );
}

async function decode<T>(res: Response): Promise<T> {
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  if (text.trim() === '') return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(res.status, { code: 'bad_response', message: 'The server sent an answer the page cannot read.', field: null });
  }
}

let refreshing: Promise<boolean> | null = null;

/**
 * Trades the refresh token for new tokens. The refresh token rotates, so concurrent 401s
 * share one refresh (a second refresh with the old token would fail, or be taken as reuse).
 */
export function refreshStaffTokens(): Promise<boolean> {
  if (!refreshing) {
    refreshing = (async () => {
      const current = session.staff();
      if (!current) return false;
      try {
        const res = await send('/auth/refresh', { method: 'POST', body: { refresh_token: current.refresh_token } }, null);
        if (!res.ok) return false;
        const tokens = await decode<Tokens>(res);
        if (!tokens || typeof tokens.access_token !== 'string') return false;
        session.saveTokens(tokens);
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** Ends the staff session for good (tokens gone): the app goes to /login. */
export function endStaffSession(): void {
  session.clearStaff();
  onStaffSessionEnded();
}

/**
 * A staff access token good for at least `marginMs` more (refreshed first when it is about to
 * expire), for callers that cannot retry on 401 such as the live feed's hello. Null when the
 * session is gone.
 */
export async function freshStaffAccessToken(marginMs = 60_000): Promise<string | null> {
  const s = session.staff();
  if (!s) return null;
  if (s.expires_at - Date.now() > marginMs) return s.access_token;
  await refreshStaffTokens();
  return session.staff()?.access_token ?? null;
}

export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const auth = opts.auth ?? 'staff';
  const token = bearerFor(auth);
  let res = await send(path, opts, token);
  if (res.status === 401 && auth === 'staff' && token) {
    // Another call may already have refreshed while this one was in flight.
    const latest = session.staff()?.access_token ?? null;
    const renewed = latest !== null && latest !== token ? true : await refreshStaffTokens();
    if (renewed) {
      res = await send(path, opts, session.staff()?.access_token ?? null);
    }
    if (res.status === 401) {
      const err = await toError(res);
      session.clearStaff();
      onStaffSessionEnded();
      throw err;
    }
  }
  if (!res.ok) throw await toError(res);
  return decode<T>(res);
}

// ---- clinic (public) ----

let clinicPromise: Promise<Clinic> | null = null;
let clockSkewMs = 0;

/** The clinic's name and time zone; fetched once. */
export function getClinic(): Promise<Clinic> {
  if (!clinicPromise) {
    clinicPromise = api<Clinic>('/clinic', { auth: 'none' }).then(
      (c) => {
        const serverNow = Date.parse(c.now);
        if (!Number.isNaN(serverNow)) clockSkewMs = serverNow - Date.now();
        return c;
      },
      (e: unknown) => {
        clinicPromise = null;
        throw e;
      },
    );
  }
  return clinicPromise;
}

/** "Now" by the server's clock (a wrong device clock must not change which day is "today"). */
export function serverNowMs(): number {
  return Date.now() + clockSkewMs;
}

// ---- staff session ----

export async function loadMe(): Promise<Me | null> {
  if (!session.staff()) return null;
  const cached = session.me();
  if (cached) return cached;
  const me = await api<Me>('/me');
  session.setMe(me);
  return me;
}

export async function logout(): Promise<void> {
  const s = session.staff();
  session.clearStaff();
  if (!s) return;
  try {
    await send('/auth/logout', { method: 'POST', body: { refresh_token: s.refresh_token } }, s.access_token);
  } catch {
    // the tokens are gone from this tab either way
  }
}
