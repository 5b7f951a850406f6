// Pure date/time helpers. All "local" values are wall-clock values in a named IANA
// time zone (the clinic's), never the browser's own zone.

export interface WallTime {
  year: number;
  month: number; // 1-12
  day: number;
  hour: number;
  minute: number;
  second: number;
}

const partsFormatters = new Map<string, Intl.DateTimeFormat>();

function partsFormatter(timeZone: string): Intl.DateTimeFormat {
  let f = partsFormatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      era: 'short',
    });
    partsFormatters.set(timeZone, f);
  }
  return f;
}

/** Whether `timeZone` is an IANA zone name this browser knows. */
export function isValidTimeZone(timeZone: string): boolean {
  try {
    partsFormatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

/** The wall-clock time in `timeZone` at the instant `epochMs`. */
export function wallTimeAt(epochMs: number, timeZone: string): WallTime {
  const parts = partsFormatter(timeZone).formatToParts(new Date(epochMs));
  const get = (type: Intl.DateTimeFormatPartTypes): number => {
    const p = parts.find((x) => x.type === type);
    if (!p) throw new Error(`missing ${type} in formatted date`);
    return Number(p.value);
  };
  let year = get('year');
  const era = parts.find((x) => x.type === 'era')?.value;
  if (era === 'BC' || era === 'B') year = 1 - year;
  let hour = get('hour');
  if (hour === 24) hour = 0; // very old engines ignore hourCycle
  return { year, month: get('month'), day: get('day'), hour, minute: get('minute'), second: get('second') };
}

function wallAsUtcMs(w: WallTime): number {
  const d = new Date(0);
  d.setUTCFullYear(w.year, w.month - 1, w.day);
  d.setUTCHours(w.hour, w.minute, w.second, 0);
  return d.getTime();
}

/** Offset of `timeZone` from UTC at the instant `epochMs`, in whole minutes (east positive). */
export function offsetMinutesAt(epochMs: number, timeZone: string): number {
  const wholeSecond = Math.floor(epochMs / 1000) * 1000;
  return Math.round((wallAsUtcMs(wallTimeAt(wholeSecond, timeZone)) - wholeSecond) / 60000);
}

/** "+01:00", "-05:30", "+00:00". */
export function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${pad2(Math.floor(abs / 60))}:${pad2(abs % 60)}`;
}

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

function pad4(n: number): string {
  return String(n).padStart(4, '0');
}

const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIME_RE = /^(\d{2}):(\d{2})(?::(\d{2}))?$/;

/** Parses "YYYY-MM-DD"; returns null if malformed or not a real calendar day. */
export function parseDate(value: string): { year: number; month: number; day: number } | null {
  const m = DATE_RE.exec(value.trim());
  if (!m) return null;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  if (month < 1 || month > 12 || day < 1) return null;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return null;
  return { year, month, day };
}

/** Parses "HH:MM" or "HH:MM:SS" (24-hour); returns null if malformed. */
export function parseTime(value: string): { hour: number; minute: number; second: number } | null {
  const m = TIME_RE.exec(value.trim());
  if (!m) return null;
  const hour = Number(m[1]);
  const minute = Number(m[2]);
  const second = m[3] === undefined ? 0 : Number(m[3]);
  if (hour > 23 || minute > 59 || second > 59) return null;
  return { hour, minute, second };
}

export class NonexistentLocalTimeError extends RangeError {
  constructor(
    readonly date: string,
    readonly time: string,
    readonly timeZone: string,
  ) {
    super(`${date} ${time} does not exist in ${timeZone} (the clocks skip over it)`);
    this.name = 'NonexistentLocalTimeError';
  }
}

/**
 * The instant (epoch ms) at which the wall clock in `timeZone` shows `date` + `time`.
 * Ambiguous times (clocks turned back) resolve to the earlier instant; times that the
 * clocks skip (clocks turned forward) throw NonexistentLocalTimeError.
 */
export function zonedWallTimeToEpochMs(date: string, time: string, timeZone: string): number {
  const d = parseDate(date);
  if (!d) throw new RangeError(`not a date (YYYY-MM-DD): ${JSON.stringify(date)}`);
  const t = parseTime(time);
  if (!t) throw new RangeError(`not a time (HH:MM): ${JSON.stringify(time)}`);
  const wall: WallTime = { ...d, ...t };
  const asUtc = wallAsUtcMs(wall);
  // The offset can only be one of the offsets in force around that wall time; trying the
  // offsets a day before and a day after covers every real transition.
  const candidates = new Set<number>();
  for (const probe of [asUtc - 86_400_000, asUtc, asUtc + 86_400_000]) {
    candidates.add(offsetMinutesAt(probe, timeZone));
  }
  const matches: number[] = [];
  for (const off of candidates) {
    const instant = asUtc - off * 60_000;
    if (wallAsUtcMs(wallTimeAt(instant, timeZone)) === asUtc) matches.push(instant);
  }
  if (matches.length === 0) throw new NonexistentLocalTimeError(date, time, timeZone);
  return Math.min(...matches);
}

/** RFC 3339 string of an instant as seen in `timeZone`, e.g. "2026-11-23T09:30:00+01:00". */
export function formatRfc3339InZone(epochMs: number, timeZone: string): string {
  const w = wallTimeAt(epochMs, timeZone);
  const off = offsetMinutesAt(epochMs, timeZone);
  return `${pad4(w.year)}-${pad2(w.month)}-${pad2(w.day)}T${pad2(w.hour)}:${pad2(w.minute)}:${pad2(w.second)}${formatOffset(off)}`;
}

/**
 * Converts a wall-clock date ("YYYY-MM-DD") and time ("HH:MM") in the named time zone
 * to RFC 3339 with that zone's offset at that moment, e.g. ("2026-07-01","09:30","Europe/Berlin")
 * → "2026-07-01T09:30:00+02:00".
 */
export function localDateTimeToRfc3339(date: string, time: string, timeZone: string): string {
  return formatRfc3339InZone(zonedWallTimeToEpochMs(date, time, timeZone), timeZone);
}

/** The calendar day ("YYYY-MM-DD") in `timeZone` at the instant `epochMs`. */
export function dateInZone(epochMs: number, timeZone: string): string {
  const w = wallTimeAt(epochMs, timeZone);
  return `${pad4(w.year)}-${pad2(w.month)}-${pad2(w.day)}`;
}

/** "HH:MM" in `timeZone` at the instant `epochMs`. */
export function timeInZone(epochMs: number, timeZone: string): string {
  const w = wallTimeAt(epochMs, timeZone);
  return `${pad2(w.hour)}:${pad2(w.minute)}`;
}

/** Adds `days` to a "YYYY-MM-DD" calendar date. */
export function addDays(date: string, days: number): string {
  const d = parseDate(date);
  if (!d) throw new RangeError(`not a date (YYYY-MM-DD): ${JSON.stringify(date)}`);
  const ms = Date.UTC(d.year, d.month - 1, d.day) + days * 86_400_000;
  const x = new Date(ms);
  return `${pad4(x.getUTCFullYear())}-${pad2(x.getUTCMonth() + 1)}-${pad2(x.getUTCDate())}`;
}

const LOCAL_ISO_RE = /^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2})/;

/**
 * The clinic-local "HH:MM" of an ISO string the server already rendered in the clinic zone
 * (`start_local`, e.g. "2026-11-23T09:30:00+01:00"). Falls back to converting `fallbackIso`.
 */
export function localClock(localIso: string | null | undefined, fallbackIso?: string, timeZone?: string): string {
  const m = localIso ? LOCAL_ISO_RE.exec(localIso) : null;
  if (m) return `${m[2]}:${m[3]}`;
  if (fallbackIso && timeZone) {
    const ms = Date.parse(fallbackIso);
    if (!Number.isNaN(ms)) return timeInZone(ms, timeZone);
  }
  return localIso ?? fallbackIso ?? '';
}

/** The clinic-local "YYYY-MM-DD" of a `start_local`-style ISO string. */
export function localDay(localIso: string | null | undefined): string {
  const m = localIso ? LOCAL_ISO_RE.exec(localIso) : null;
  return m ? m[1]! : '';
}

/** A long, human day label for a "YYYY-MM-DD" date, e.g. "Monday, 23 November 2026". */
export function formatDayLabel(date: string, locale?: string): string {
  const d = parseDate(date);
  if (!d) return date;
  return new Intl.DateTimeFormat(locale, {
    timeZone: 'UTC',
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    year: 'numeric',
  }).format(new Date(Date.UTC(d.year, d.month - 1, d.day, 12)));
}

/** Date and time of an instant in `timeZone`, for people, e.g. "23 Nov 2026, 09:30". */
export function formatInstant(iso: string, timeZone: string, locale?: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  return new Intl.DateTimeFormat(locale, {
    timeZone,
    dateStyle: 'medium',
    timeStyle: 'short',
  }).format(new Date(ms));
}

/** The next wall-clock time at or after `epochMs` in `timeZone` rounded up to `stepMinutes`. */
export function roundUpToStep(epochMs: number, stepMinutes: number): number {
  const step = stepMinutes * 60_000;
  return Math.ceil(epochMs / step) * step;
}
