import { describe, expect, it } from 'vitest';
import {
  addDays,
  dateInZone,
  formatOffset,
  localClock,
  localDateTimeToRfc3339,
  localDay,
  NonexistentLocalTimeError,
  offsetMinutesAt,
  parseDate,
  parseTime,
  roundUpToStep,
  timeInZone,
  zonedWallTimeToEpochMs,
} from '../src/lib/time';

describe('localDateTimeToRfc3339', () => {
  it('uses the winter offset in Berlin', () => {
    expect(localDateTimeToRfc3339('2026-11-23', '09:30', 'Europe/Berlin')).toBe('2026-11-23T09:30:00+01:00');
  });

  it('uses the summer offset in Berlin', () => {
    expect(localDateTimeToRfc3339('2026-07-01', '09:30', 'Europe/Berlin')).toBe('2026-07-01T09:30:00+02:00');
  });

  it('handles zones west of UTC', () => {
    expect(localDateTimeToRfc3339('2026-01-15', '08:00', 'America/New_York')).toBe('2026-01-15T08:00:00-05:00');
    expect(localDateTimeToRfc3339('2026-06-15', '08:00', 'America/New_York')).toBe('2026-06-15T08:00:00-04:00');
  });

  it('handles half- and quarter-hour offsets', () => {
    expect(localDateTimeToRfc3339('2026-03-10', '14:15', 'Asia/Kolkata')).toBe('2026-03-10T14:15:00+05:30');
    expect(localDateTimeToRfc3339('2026-03-10', '14:15', 'Asia/Kathmandu')).toBe('2026-03-10T14:15:00+05:45');
    expect(localDateTimeToRfc3339('2026-03-10', '09:00', 'America/St_Johns')).toBe('2026-03-10T09:00:00-02:30');
  });

  it('writes UTC as +00:00', () => {
    expect(localDateTimeToRfc3339('2026-11-23', '00:00', 'UTC')).toBe('2026-11-23T00:00:00+00:00');
    expect(localDateTimeToRfc3339('2026-11-23', '23:59', 'Etc/UTC')).toBe('2026-11-23T23:59:00+00:00');
  });

  it('handles the southern hemisphere (summer time in January)', () => {
    expect(localDateTimeToRfc3339('2026-01-10', '10:00', 'Australia/Sydney')).toBe('2026-01-10T10:00:00+11:00');
    expect(localDateTimeToRfc3339('2026-07-10', '10:00', 'Australia/Sydney')).toBe('2026-07-10T10:00:00+10:00');
  });

  it('handles midnight and the end of the day', () => {
    expect(localDateTimeToRfc3339('2026-12-31', '23:45', 'Europe/Berlin')).toBe('2026-12-31T23:45:00+01:00');
    expect(localDateTimeToRfc3339('2027-01-01', '00:00', 'Pacific/Auckland')).toBe('2027-01-01T00:00:00+13:00');
  });

  it('accepts seconds', () => {
    expect(localDateTimeToRfc3339('2026-11-23', '09:30:15', 'Europe/London')).toBe('2026-11-23T09:30:15+00:00');
  });

  it('resolves the repeated hour when clocks go back to the earlier instant', () => {
    // 2026-10-25 03:00 CEST → 02:00 CET: 02:30 happens twice in Berlin.
    expect(localDateTimeToRfc3339('2026-10-25', '02:30', 'Europe/Berlin')).toBe('2026-10-25T02:30:00+02:00');
    expect(localDateTimeToRfc3339('2026-10-25', '03:00', 'Europe/Berlin')).toBe('2026-10-25T03:00:00+01:00');
    // 2026-11-01 02:00 EDT → 01:00 EST in New York.
    expect(localDateTimeToRfc3339('2026-11-01', '01:30', 'America/New_York')).toBe('2026-11-01T01:30:00-04:00');
  });

  it('rejects times the clocks skip when they go forward', () => {
    // 2026-03-29 02:00 CET → 03:00 CEST in Berlin.
    expect(() => localDateTimeToRfc3339('2026-03-29', '02:30', 'Europe/Berlin')).toThrow(NonexistentLocalTimeError);
    expect(localDateTimeToRfc3339('2026-03-29', '01:59', 'Europe/Berlin')).toBe('2026-03-29T01:59:00+01:00');
    expect(localDateTimeToRfc3339('2026-03-29', '03:00', 'Europe/Berlin')).toBe('2026-03-29T03:00:00+02:00');
    // 2026-03-08 02:00 EST → 03:00 EDT in New York.
    expect(() => localDateTimeToRfc3339('2026-03-08', '02:15', 'America/New_York')).toThrow(NonexistentLocalTimeError);
  });

  it('gives the instant the server will read back', () => {
    const s = localDateTimeToRfc3339('2026-11-23', '09:30', 'Europe/Berlin');
    expect(new Date(s).toISOString()).toBe('2026-11-23T08:30:00.000Z');
    expect(zonedWallTimeToEpochMs('2026-11-23', '09:30', 'Europe/Berlin')).toBe(Date.parse('2026-11-23T08:30:00Z'));
  });

  it('rejects malformed input', () => {
    expect(() => localDateTimeToRfc3339('2026-02-30', '09:00', 'UTC')).toThrow(RangeError);
    expect(() => localDateTimeToRfc3339('23.11.2026', '09:00', 'UTC')).toThrow(RangeError);
    expect(() => localDateTimeToRfc3339('2026-11-23', '25:00', 'UTC')).toThrow(RangeError);
    expect(() => localDateTimeToRfc3339('2026-11-23', '9am', 'UTC')).toThrow(RangeError);
    expect(() => localDateTimeToRfc3339('2026-11-23', '09:00', 'Not/AZone')).toThrow(RangeError);
  });
});

describe('dateInZone / timeInZone', () => {
  const instant = Date.parse('2026-11-23T23:30:00Z');
  it('gives the clinic day, not the UTC day', () => {
    expect(dateInZone(instant, 'UTC')).toBe('2026-11-23');
    expect(dateInZone(instant, 'Europe/Berlin')).toBe('2026-11-24');
    expect(dateInZone(instant, 'America/Los_Angeles')).toBe('2026-11-23');
    expect(timeInZone(instant, 'Europe/Berlin')).toBe('00:30');
    expect(timeInZone(instant, 'Asia/Kolkata')).toBe('05:00');
  });

  it('round-trips with localDateTimeToRfc3339', () => {
    for (const tz of ['Europe/Berlin', 'America/New_York', 'Asia/Kathmandu', 'Australia/Lord_Howe']) {
      const s = localDateTimeToRfc3339(dateInZone(instant, tz), timeInZone(instant, tz), tz);
      expect(Date.parse(s)).toBe(instant);
    }
  });
});

describe('small helpers', () => {
  it('formats offsets', () => {
    expect(formatOffset(0)).toBe('+00:00');
    expect(formatOffset(60)).toBe('+01:00');
    expect(formatOffset(-150)).toBe('-02:30');
    expect(formatOffset(345)).toBe('+05:45');
  });

  it('reads offsets', () => {
    expect(offsetMinutesAt(Date.parse('2026-07-01T12:00:00Z'), 'Europe/Berlin')).toBe(120);
    expect(offsetMinutesAt(Date.parse('2026-01-01T12:00:00Z'), 'America/New_York')).toBe(-300);
  });

  it('parses dates and times strictly', () => {
    expect(parseDate('2028-02-29')).toEqual({ year: 2028, month: 2, day: 29 });
    expect(parseDate('2027-02-29')).toBeNull();
    expect(parseDate('2026-13-01')).toBeNull();
    expect(parseTime('23:59')).toEqual({ hour: 23, minute: 59, second: 0 });
    expect(parseTime('24:00')).toBeNull();
  });

  it('adds days across months and years', () => {
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
    expect(addDays('2026-03-01', -1)).toBe('2026-02-28');
    expect(addDays('2028-02-28', 1)).toBe('2028-02-29');
  });

  it('reads the clinic clock from start_local strings', () => {
    expect(localClock('2026-11-23T09:30:00+01:00')).toBe('09:30');
    expect(localDay('2026-11-23T09:30:00+01:00')).toBe('2026-11-23');
    expect(localClock(null, '2026-11-23T08:30:00Z', 'Europe/Berlin')).toBe('09:30');
    expect(localDay(undefined)).toBe('');
  });

  it('rounds up to a step', () => {
    const t = Date.parse('2026-11-23T09:31:10Z');
    expect(new Date(roundUpToStep(t, 15)).toISOString()).toBe('2026-11-23T09:45:00.000Z');
    const exact = Date.parse('2026-11-23T09:45:00Z');
    expect(roundUpToStep(exact, 15)).toBe(exact);
  });
});
