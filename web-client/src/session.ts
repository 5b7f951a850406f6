// Tokens live in sessionStorage: they survive a reload but not closing the tab.
import type { Me, Tokens } from './types';

const STAFF_KEY = 'bedside.staff';
const VISIT_KEY = 'bedside.visit';

export interface StaffSession {
  access_token: string;
  refresh_token: string;
  expires_at: number;
}

export interface VisitSession {
  access_token: string;
  appointment_id: string;
  expires_at: number;
}

function read<T>(key: string): T | null {
  try {
    const raw = sessionStorage.getItem(key);
    return raw ? (JSON.parse(raw) as T) : null;
  } catch {
    return null;
  }
}

function write(key: string, value: unknown): void {
  try {
    if (value == null) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage disabled: the session then lasts only as long as this page
  }
}

let me: Me | null = null;

export const session = {
  staff(): StaffSession | null {
    const s = read<StaffSession>(STAFF_KEY);
    return s && typeof s.access_token === 'string' && typeof s.refresh_token === 'string' ? s : null;
  },
  saveTokens(t: Tokens): void {
    write(STAFF_KEY, {
      access_token: t.access_token,
      refresh_token: t.refresh_token,
      expires_at: Date.now() + (t.expires_in ?? 900) * 1000,
    } satisfies StaffSession);
  },
  clearStaff(): void {
    write(STAFF_KEY, null);
    me = null;
  },
  me(): Me | null {
    return me;
  },
  setMe(value: Me | null): void {
    me = value;
  },
  visit(): VisitSession | null {
    return read<VisitSession>(VISIT_KEY);
  },
  saveVisit(v: VisitSession): void {
    write(VISIT_KEY, v);
  },
  clearVisit(): void {
    write(VISIT_KEY, null);
  },
};
