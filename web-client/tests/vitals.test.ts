import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  KeyedThrottle,
  addPoint,
  alertMetric,
  alertTitle,
  applyAlert,
  backoffDelay,
  bucketsToColumns,
  compareAlerts,
  formatAge,
  formatReading,
  formatValue,
  isStale,
  isView,
  mergeReading,
  news2BandClass,
  news2BandLabel,
  parseLimit,
  sortAlerts,
  sparklinePoints,
  thresholdSourceLabel,
  unitLabel,
  type AlertLike,
  type Reading,
} from '../src/lib/vitals';

const T0 = Date.parse('2026-11-23T12:00:00Z');

describe('formatAge', () => {
  it('says just now for the first seconds and for future times', () => {
    expect(formatAge(T0, T0)).toBe('just now');
    expect(formatAge(T0, T0 + 4_999)).toBe('just now');
    expect(formatAge(T0 + 30_000, T0)).toBe('just now');
  });

  it('counts seconds, minutes, hours and days', () => {
    expect(formatAge(T0, T0 + 5_000)).toBe('5 s ago');
    expect(formatAge(T0, T0 + 59_999)).toBe('59 s ago');
    expect(formatAge(T0, T0 + 60_000)).toBe('1 min ago');
    expect(formatAge(T0, T0 + 2 * 60_000 + 10_000)).toBe('2 min ago');
    expect(formatAge(T0, T0 + 59 * 60_000)).toBe('59 min ago');
    expect(formatAge(T0, T0 + 60 * 60_000)).toBe('1 h ago');
    expect(formatAge(T0, T0 + 23 * 3_600_000 + 59 * 60_000)).toBe('23 h ago');
    expect(formatAge(T0, T0 + 48 * 3_600_000)).toBe('2 d ago');
  });

  it('survives an unreadable time', () => {
    expect(formatAge(Number.NaN, T0)).toBe('just now');
  });

  it('marks readings older than 15 minutes as stale', () => {
    expect(isStale(T0, T0 + 15 * 60_000)).toBe(false);
    expect(isStale(T0, T0 + 15 * 60_000 + 1)).toBe(true);
  });
});

describe('units and values', () => {
  it('writes UCUM units as people do', () => {
    expect(unitLabel('Cel')).toBe('°C');
    expect(unitLabel('mm[Hg]')).toBe('mmHg');
    expect(unitLabel('/min')).toBe('/min');
    expect(unitLabel('%')).toBe('%');
    expect(unitLabel('{ACVPU}')).toBe('');
    expect(unitLabel('1')).toBe('');
  });

  it('rounds per metric and names coded values', () => {
    expect(formatValue('heart_rate', 72)).toBe('72');
    expect(formatValue('heart_rate', 72.46)).toBe('72.5');
    expect(formatValue('body_temperature', 37)).toBe('37.0');
    expect(formatValue('consciousness', 0)).toBe('Alert');
    expect(formatValue('consciousness', 4)).toBe('Unresponsive');
    expect(formatValue('supplemental_oxygen', 1)).toBe('On oxygen');
    expect(formatValue('spo2', Number.NaN)).toBe('—');
    expect(formatReading('spo2', 85, '%')).toBe('85 %');
    expect(formatReading('body_temperature', 38.25, 'Cel')).toBe('38.3 °C');
  });
});

describe('NEWS2 bands', () => {
  it('labels and colours each band', () => {
    expect(news2BandLabel('low')).toBe('Low');
    expect(news2BandLabel('low_medium')).toBe('Low–medium');
    expect(news2BandLabel('medium')).toBe('Medium');
    expect(news2BandLabel('high')).toBe('High');
    expect(news2BandClass('low')).toBe('news2-low');
    expect(news2BandClass('low_medium')).toBe('news2-low-medium');
    expect(news2BandClass('medium')).toBe('news2-medium');
    expect(news2BandClass('high')).toBe('news2-high');
  });

  it('keeps unknown bands neutral', () => {
    expect(news2BandClass('purple')).toBe('news2-unknown');
    expect(news2BandLabel('purple')).toBe('purple');
  });
});

function alert(over: Partial<AlertLike>): AlertLike {
  return {
    id: 'a',
    patient_id: 'p',
    rule: 'threshold:spo2',
    severity: 'high',
    status: 'open',
    opened_at: '2026-11-23T12:00:00Z',
    updated_at: '2026-11-23T12:00:00Z',
    acknowledged_at: null,
    acknowledged_by: null,
    resolved_at: null,
    resolved_by: null,
    detail: null,
    ...over,
  };
}

describe('alert order', () => {
  it('puts open before acknowledged, then severity, then the longest waiting', () => {
    const list = [
      alert({ id: 'ack-critical', status: 'acknowledged', severity: 'critical' }),
      alert({ id: 'open-low', severity: 'low' }),
      alert({ id: 'open-high-new', severity: 'high', opened_at: '2026-11-23T12:05:00Z' }),
      alert({ id: 'open-critical', severity: 'critical', opened_at: '2026-11-23T12:10:00Z' }),
      alert({ id: 'open-high-old', severity: 'high', opened_at: '2026-11-23T11:55:00Z' }),
      alert({ id: 'open-medium', severity: 'medium' }),
    ];
    expect(sortAlerts(list).map((a) => a.id)).toEqual(['open-critical', 'open-high-old', 'open-high-new', 'open-medium', 'open-low', 'ack-critical']);
  });

  it('is stable on ties (by id)', () => {
    expect(compareAlerts(alert({ id: 'x' }), alert({ id: 'y' }))).toBeLessThan(0);
    expect(compareAlerts(alert({ id: 'y' }), alert({ id: 'x' }))).toBeGreaterThan(0);
    expect(compareAlerts(alert({ id: 'x' }), alert({ id: 'x' }))).toBe(0);
  });
});

describe('applyAlert', () => {
  it('adds, updates and removes resolved alerts', () => {
    const live = new Map<string, AlertLike>();
    expect(applyAlert(live, alert({}))).toBe(true);
    expect(live.get('a')?.status).toBe('open');
    expect(applyAlert(live, alert({ status: 'acknowledged', updated_at: '2026-11-23T12:01:00Z', acknowledged_by: 'u' }))).toBe(true);
    expect(live.get('a')?.status).toBe('acknowledged');
    expect(applyAlert(live, alert({ status: 'resolved', updated_at: '2026-11-23T12:02:00Z' }))).toBe(true);
    expect(live.has('a')).toBe(false);
    expect(applyAlert(live, alert({ id: 'b', status: 'resolved' }))).toBe(false);
  });

  it('never lets an older state replace a newer one', () => {
    const live = new Map<string, AlertLike>();
    applyAlert(live, alert({ status: 'acknowledged', updated_at: '2026-11-23T12:01:00Z' }));
    expect(applyAlert(live, alert({ status: 'open', updated_at: '2026-11-23T12:00:00Z' }))).toBe(false);
    expect(live.get('a')?.status).toBe('acknowledged');
  });
});

describe('alertTitle', () => {
  it('describes a threshold breach', () => {
    const a = alert({ detail: { metric: 'spo2', value: 85, unit: '%', low: 90, high: null, time: '2026-11-23T12:00:00Z' } });
    expect(alertTitle(a)).toBe('SpO₂ 85 % (below 90 %)');
    expect(alertMetric(a)).toBe('spo2');
    const hot = alert({ rule: 'threshold:body_temperature', detail: { metric: 'body_temperature', value: 39.4, unit: 'Cel', low: 35, high: 39 } });
    expect(alertTitle(hot)).toBe('Temperature 39.4 °C (above 39.0 °C)');
  });

  it('describes NEWS2 and offline alerts', () => {
    expect(alertTitle(alert({ rule: 'news2', detail: { news2: 5, band: 'medium', missing: [] } }))).toBe('NEWS2 5 (medium)');
    expect(alertTitle(alert({ rule: 'offline:dev-1', detail: {} }))).toBe('Device offline');
    expect(alertMetric(alert({ rule: 'news2' }))).toBeNull();
  });

  it('copes with a missing detail', () => {
    expect(alertTitle(alert({ rule: 'threshold:heart_rate', detail: null }))).toBe('Heart rate outside its limits');
  });
});

describe('sample coalescing', () => {
  const r = (value: number, time: string, metric = 'heart_rate'): Reading => ({ metric, value, unit: '/min', time });

  it('keeps the newest reading per metric', () => {
    const latest = new Map<string, Reading>();
    expect(mergeReading(latest, r(70, '2026-11-23T12:00:00Z'))).toBe(true);
    expect(mergeReading(latest, r(72, '2026-11-23T12:00:01Z'))).toBe(true);
    expect(mergeReading(latest, r(60, '2026-11-23T11:59:00Z'))).toBe(false);
    expect(mergeReading(latest, r(72, '2026-11-23T12:00:01Z'))).toBe(false);
    expect(mergeReading(latest, r(97, '2026-11-23T11:00:00Z', 'spo2'))).toBe(true);
    expect(latest.get('heart_rate')?.value).toBe(72);
    expect(latest.size).toBe(2);
  });

  it('ignores unreadable samples', () => {
    const latest = new Map<string, Reading>();
    expect(mergeReading(latest, r(70, 'yesterday'))).toBe(false);
    expect(mergeReading(latest, r(Number.NaN, '2026-11-23T12:00:00Z'))).toBe(false);
  });

  it('keeps sparkline points sorted, de-duplicated and within the window', () => {
    const hour = 3_600_000;
    let pts = addPoint([], { t: T0, v: 70 }, T0, hour);
    pts = addPoint(pts, { t: T0 - 1000, v: 68 }, T0, hour);
    pts = addPoint(pts, { t: T0, v: 71 }, T0, hour);
    expect(pts).toEqual([
      { t: T0 - 1000, v: 68 },
      { t: T0, v: 71 },
    ]);
    pts = addPoint(pts, { t: T0 + hour, v: 80 }, T0 + hour, hour);
    expect(pts.map((p) => p.v)).toEqual([71, 80]);
    expect(addPoint([], { t: T0 - 2 * hour, v: 1 }, T0, hour)).toEqual([]);
  });
});

describe('sparklinePoints', () => {
  it('scales time to x and value to y (higher values higher up)', () => {
    const line = sparklinePoints(
      [
        { t: 0, v: 60 },
        { t: 50, v: 80 },
        { t: 100, v: 70 },
      ],
      0,
      100,
      104,
      24,
      2,
    );
    expect(line).toBe('2,22 52,2 102,12');
  });

  it('draws a flat series mid-height and nothing without points', () => {
    expect(sparklinePoints([{ t: 10, v: 5 }], 0, 20, 24, 24, 2)).toBe('12,12');
    expect(sparklinePoints([], 0, 20, 24, 24)).toBe('');
    expect(sparklinePoints([{ t: 30, v: 5 }], 0, 20, 24, 24)).toBe('');
  });
});

describe('bucketsToColumns', () => {
  const b = (start: string, v: number, count = 1) => ({ start, min: v - 1, avg: v, max: v + 1, count });

  it('gives uPlot columns in seconds and breaks the line at gaps', () => {
    const cols = bucketsToColumns([b('2026-11-23T12:02:00Z', 72), b('2026-11-23T12:00:00Z', 70), b('2026-11-23T12:01:00Z', 71)], 60_000);
    expect(cols[0]).toEqual([T0 / 1000, T0 / 1000 + 60, T0 / 1000 + 120]);
    expect(cols[2]).toEqual([70, 71, 72]);
    const gap = bucketsToColumns([b('2026-11-23T12:00:00Z', 70), b('2026-11-23T12:10:00Z', 75), b('2026-11-23T12:11:00Z', 76, 0)], 60_000);
    expect(gap[0]).toEqual([T0 / 1000, T0 / 1000 + 60, T0 / 1000 + 600]);
    expect(gap[1]).toEqual([69, null, 74]);
    expect(gap[3]).toEqual([71, null, 76]);
  });
});

describe('backoffDelay', () => {
  it('doubles up to the cap, with jitter', () => {
    expect(backoffDelay(0, 1000, 30_000, () => 0.5)).toBe(1000);
    expect(backoffDelay(3, 1000, 30_000, () => 0.5)).toBe(8000);
    expect(backoffDelay(10, 1000, 30_000, () => 0.5)).toBe(30_000);
    expect(backoffDelay(10, 1000, 30_000, () => 1)).toBe(30_000);
    expect(backoffDelay(0, 1000, 30_000, () => 0)).toBe(800);
  });
});

describe('KeyedThrottle', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(T0);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('runs at once, then at most once per interval per key, with one trailing run', () => {
    const runs: [string, number][] = [];
    const t = new KeyedThrottle(5000, (k) => runs.push([k, Date.now() - T0]));
    t.call('a');
    t.call('a');
    t.call('b');
    vi.advanceTimersByTime(1000);
    t.call('a');
    expect(runs).toEqual([
      ['a', 0],
      ['b', 0],
    ]);
    vi.advanceTimersByTime(4000);
    expect(runs).toEqual([
      ['a', 0],
      ['b', 0],
      ['a', 5000],
    ]);
    vi.advanceTimersByTime(10_000);
    expect(runs.length).toBe(3);
    t.call('a');
    expect(runs.at(-1)).toEqual(['a', 15_000]);
  });

  it('cancels trailing runs', () => {
    const run = vi.fn();
    const t = new KeyedThrottle(5000, run);
    t.call('a');
    t.call('a');
    t.cancel();
    vi.advanceTimersByTime(10_000);
    expect(run).toHaveBeenCalledTimes(1);
  });
});

describe('thresholds', () => {
  it('parses limits: empty is no limit, junk is invalid', () => {
    expect(parseLimit('')).toBeNull();
    expect(parseLimit('  ')).toBeNull();
    expect(parseLimit('90')).toBe(90);
    expect(parseLimit('37,5')).toBe(37.5);
    expect(parseLimit('-1.5')).toBe(-1.5);
    expect(parseLimit('.5')).toBe(0.5);
    expect(parseLimit('9O')).toBeUndefined();
    expect(parseLimit('1e400')).toBeUndefined();
    expect(parseLimit('0x10')).toBeUndefined();
  });

  it('names where a threshold comes from', () => {
    expect(thresholdSourceLabel('clinic')).toBe('Clinic default');
    expect(thresholdSourceLabel('patient')).toBe('Set for this patient');
    expect(thresholdSourceLabel('none')).toBe('No limits');
  });

  it('knows the chart views', () => {
    expect(isView('1h')).toBe(true);
    expect(isView('30d')).toBe(true);
    expect(isView('2h')).toBe(false);
    expect(isView('toString')).toBe(false);
    expect(isView(null)).toBe(false);
  });
});
