// Pure helpers of the live vitals dashboard and the chart page: labels, units, reading ages,
// NEWS2 bands, alert ordering and merging, sample coalescing, sparkline geometry, backoff.

export type MetricName =
  | 'heart_rate'
  | 'spo2'
  | 'respiratory_rate'
  | 'body_temperature'
  | 'systolic_bp'
  | 'diastolic_bp'
  | 'body_weight'
  | 'glucose'
  | 'supplemental_oxygen'
  | 'consciousness';

export type News2Band = 'low' | 'low_medium' | 'medium' | 'high';
export type Severity = 'low' | 'medium' | 'high' | 'critical';
export type AlertStatus = 'open' | 'acknowledged' | 'resolved';

/** A latest value or a live sample (the server always sends the canonical unit). */
export interface Reading {
  metric: string;
  value: number;
  unit: string;
  time: string;
}

export interface AlertLike {
  id: string;
  patient_id: string;
  rule: string;
  severity: string;
  status: string;
  opened_at: string;
  updated_at: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  resolved_at: string | null;
  resolved_by: string | null;
  detail: Record<string, unknown> | null;
}

// ---- metrics ----

const METRIC_LABEL: Record<string, string> = {
  heart_rate: 'Heart rate',
  spo2: 'SpO₂',
  respiratory_rate: 'Respiratory rate',
  body_temperature: 'Temperature',
  systolic_bp: 'Systolic BP',
  diastolic_bp: 'Diastolic BP',
  body_weight: 'Weight',
  glucose: 'Glucose',
  supplemental_oxygen: 'Supplemental oxygen',
  consciousness: 'Consciousness',
};

/** Metrics the chart page draws, in display order. */
export const CHART_METRICS: readonly MetricName[] = [
  'heart_rate',
  'spo2',
  'respiratory_rate',
  'body_temperature',
  'systolic_bp',
  'diastolic_bp',
  'body_weight',
  'glucose',
];

/** Metrics a threshold can be set for, in display order (the server lists those in force). */
export const THRESHOLD_METRICS: readonly MetricName[] = [
  'heart_rate',
  'spo2',
  'respiratory_rate',
  'body_temperature',
  'systolic_bp',
  'diastolic_bp',
  'body_weight',
  'glucose',
  'consciousness',
];

/** Canonical units per metric (for rows the server does not list, e.g. weight with no default). */
export const METRIC_UNIT: Record<MetricName, string> = {
  heart_rate: '/min',
  spo2: '%',
  respiratory_rate: '/min',
  body_temperature: 'Cel',
  systolic_bp: 'mm[Hg]',
  diastolic_bp: 'mm[Hg]',
  body_weight: 'kg',
  glucose: 'mg/dL',
  supplemental_oxygen: '1',
  consciousness: '{ACVPU}',
};

export function metricLabel(metric: string): string {
  return METRIC_LABEL[metric] ?? metric.replace(/_/g, ' ');
}

/** UCUM units as people write them ("Cel" → "°C", "mm[Hg]" → "mmHg"); unitless codes → "". */
export function unitLabel(unit: string | null | undefined): string {
  switch (unit) {
    case 'Cel':
      return '°C';
    case 'mm[Hg]':
      return 'mmHg';
    case '1':
    case '{ACVPU}':
    case null:
    case undefined:
      return '';
    default:
      return unit;
  }
}

const ACVPU = ['Alert', 'New confusion', 'Responds to voice', 'Responds to pain', 'Unresponsive'];

/** A value for display: sensible decimals per metric; coded metrics as words. */
export function formatValue(metric: string, value: number): string {
  if (!Number.isFinite(value)) return '—';
  switch (metric) {
    case 'consciousness':
      return ACVPU[Math.round(value)] ?? String(value);
    case 'supplemental_oxygen':
      return value >= 0.5 ? 'On oxygen' : 'On air';
    case 'body_temperature':
      return value.toFixed(1);
    case 'body_weight':
      return (Math.round(value * 10) / 10).toString();
    default:
      return Number.isInteger(value) ? String(value) : (Math.round(value * 10) / 10).toString();
  }
}

/** Value and unit, e.g. "37.2 °C", "72 /min", "85 %". */
export function formatReading(metric: string, value: number, unit: string): string {
  const u = unitLabel(unit);
  const v = formatValue(metric, value);
  return u ? `${v} ${u}` : v;
}

// ---- ages ----

/**
 * How long ago a reading was taken, short and plain: "just now", "45 s ago", "2 min ago",
 * "3 h ago", "2 d ago". Future times (a device or server clock ahead) count as "just now".
 */
export function formatAge(timeMs: number, nowMs: number): string {
  const s = Math.floor((nowMs - timeMs) / 1000);
  if (!Number.isFinite(s) || s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ago`;
  return `${Math.floor(h / 24)} d ago`;
}

/** A reading older than this is shown as stale (the device may be off or out of reach). */
export const STALE_AFTER_MS = 15 * 60_000;

export function isStale(timeMs: number, nowMs: number): boolean {
  return nowMs - timeMs > STALE_AFTER_MS;
}

// ---- NEWS2 ----

const BAND_LABEL: Record<News2Band, string> = {
  low: 'Low',
  low_medium: 'Low–medium',
  medium: 'Medium',
  high: 'High',
};

const BAND_RESPONSE: Record<News2Band, string> = {
  low: 'routine monitoring',
  low_medium: 'urgent ward-based review',
  medium: 'urgent response',
  high: 'emergency response',
};

export function news2BandLabel(band: string): string {
  return BAND_LABEL[band as News2Band] ?? band;
}

/** The clinical response a band calls for (RCP NEWS2 chart). */
export function news2Response(band: string): string {
  return BAND_RESPONSE[band as News2Band] ?? '';
}

/** CSS class colouring a NEWS2 total: green, yellow, orange, red (unknown bands stay neutral). */
export function news2BandClass(band: string): string {
  return band in BAND_LABEL ? `news2-${band.replace('_', '-')}` : 'news2-unknown';
}

const NEWS2_PARAMETER: Record<string, string> = {
  respiration_rate: 'respiratory rate',
  spo2: 'SpO₂',
  air_or_oxygen: 'air or oxygen',
  systolic_bp: 'systolic BP',
  pulse: 'pulse',
  consciousness: 'consciousness',
  temperature: 'temperature',
};

export function news2ParameterLabel(p: string): string {
  return NEWS2_PARAMETER[p] ?? p.replace(/_/g, ' ');
}

// ---- alerts ----

const SEVERITY_RANK: Record<string, number> = { critical: 4, high: 3, medium: 2, low: 1 };
const STATUS_RANK: Record<string, number> = { open: 2, acknowledged: 1, resolved: 0 };

export function severityRank(severity: string): number {
  return SEVERITY_RANK[severity] ?? 0;
}

export function severityLabel(severity: string): string {
  return severity ? severity.charAt(0).toUpperCase() + severity.slice(1) : '';
}

/**
 * Most urgent first: open before acknowledged, then by severity (critical first), then the
 * one waiting longest (oldest opened_at), then by id so the order is stable.
 */
export function compareAlerts(a: AlertLike, b: AlertLike): number {
  return (
    (STATUS_RANK[b.status] ?? 0) - (STATUS_RANK[a.status] ?? 0) ||
    severityRank(b.severity) - severityRank(a.severity) ||
    (Date.parse(a.opened_at) || 0) - (Date.parse(b.opened_at) || 0) ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

export function sortAlerts<T extends AlertLike>(alerts: Iterable<T>): T[] {
  return [...alerts].sort(compareAlerts);
}

/**
 * Applies an alert's new state to the live set (keyed by id): resolved alerts leave it; an
 * older state (by updated_at) never replaces a newer one. Returns whether anything changed.
 */
export function applyAlert<T extends AlertLike>(live: Map<string, T>, alert: T): boolean {
  const known = live.get(alert.id);
  if (known && Date.parse(known.updated_at) > Date.parse(alert.updated_at)) return false;
  if (alert.status === 'resolved') return live.delete(alert.id);
  live.set(alert.id, alert);
  return true;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** One line saying what an alert is about, e.g. "SpO₂ 85 % (below 90 %)", "NEWS2 5 (medium)". */
export function alertTitle(alert: Pick<AlertLike, 'rule' | 'detail'>): string {
  const d = alert.detail ?? {};
  if (alert.rule.startsWith('threshold:')) {
    const metric = typeof d['metric'] === 'string' ? d['metric'] : alert.rule.slice('threshold:'.length);
    const unit = typeof d['unit'] === 'string' ? d['unit'] : '';
    const value = num(d['value']);
    const low = num(d['low']);
    const high = num(d['high']);
    const label = metricLabel(metric);
    if (value === null) return `${label} outside its limits`;
    const reading = formatReading(metric, value, unit);
    if (low !== null && value < low) return `${label} ${reading} (below ${formatReading(metric, low, unit)})`;
    if (high !== null && value > high) return `${label} ${reading} (above ${formatReading(metric, high, unit)})`;
    return `${label} ${reading} (outside its limits)`;
  }
  if (alert.rule === 'news2') {
    const score = num(d['news2']);
    const band = typeof d['band'] === 'string' ? d['band'] : '';
    return `NEWS2 ${score ?? '?'}${band ? ` (${news2BandLabel(band).toLowerCase()})` : ''}`;
  }
  if (alert.rule.startsWith('offline:')) return 'Device offline';
  return alert.rule;
}

/** The metric an alert is about (for threshold alerts), else null. */
export function alertMetric(alert: Pick<AlertLike, 'rule'>): string | null {
  return alert.rule.startsWith('threshold:') ? alert.rule.slice('threshold:'.length) : null;
}

// ---- samples ----

/**
 * Keeps the newest reading per metric. Samples may arrive out of order (a snapshot taken
 * before a live sample, a REST answer after both): an older reading never replaces a newer
 * one. Returns whether the stored reading changed.
 */
export function mergeReading(latest: Map<string, Reading>, r: Reading): boolean {
  const known = latest.get(r.metric);
  const t = Date.parse(r.time);
  if (Number.isNaN(t) || !Number.isFinite(r.value)) return false;
  if (known) {
    const kt = Date.parse(known.time);
    if (kt > t || (kt === t && known.value === r.value)) return false;
  }
  latest.set(r.metric, r);
  return true;
}

export interface Point {
  t: number;
  v: number;
}

/**
 * Adds a live sample to a sparkline series: points stay sorted by time, a sample at an
 * existing time replaces it, and points older than `windowMs` before `nowMs` are dropped.
 */
export function addPoint(points: Point[], p: Point, nowMs: number, windowMs: number): Point[] {
  const from = nowMs - windowMs;
  const out = points.filter((x) => x.t >= from && x.t !== p.t);
  if (p.t >= from) out.push(p);
  out.sort((a, b) => a.t - b.t);
  return out;
}

/**
 * SVG polyline points ("x,y x,y …") for a sparkline of `points` over [from, to] in a
 * width × height box with `pad` pixels inside the edges. A flat series sits mid-height.
 */
export function sparklinePoints(points: Point[], from: number, to: number, width: number, height: number, pad = 2): string {
  const shown = points.filter((p) => p.t >= from && p.t <= to && Number.isFinite(p.v));
  if (shown.length === 0 || to <= from) return '';
  let min = Infinity;
  let max = -Infinity;
  for (const p of shown) {
    min = Math.min(min, p.v);
    max = Math.max(max, p.v);
  }
  const w = width - 2 * pad;
  const hgt = height - 2 * pad;
  const x = (t: number) => pad + ((t - from) / (to - from)) * w;
  const y = (v: number) => (max === min ? pad + hgt / 2 : pad + (1 - (v - min) / (max - min)) * hgt);
  const r = (n: number) => Math.round(n * 10) / 10;
  return shown.map((p) => `${r(x(p.t))},${r(y(p.v))}`).join(' ');
}

// ---- live feed ----

/** Reconnect delay: exponential from `baseMs`, capped at `maxMs`, with ±20 % jitter. */
export function backoffDelay(attempt: number, baseMs = 1000, maxMs = 30_000, random: () => number = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt));
  const jitter = 0.8 + 0.4 * random();
  return Math.round(Math.min(maxMs, exp * jitter));
}

/**
 * At most one call per `intervalMs` per key: the first call runs at once, calls during the
 * quiet period are folded into one trailing run at its end.
 */
export class KeyedThrottle {
  private readonly last = new Map<string, number>();
  private readonly timers = new Map<string, ReturnType<typeof setTimeout>>();

  constructor(
    private readonly intervalMs: number,
    private readonly run: (key: string) => void,
    private readonly now: () => number = Date.now,
  ) {}

  call(key: string): void {
    if (this.timers.has(key)) return; // a trailing run is already due
    const since = this.now() - (this.last.get(key) ?? -Infinity);
    if (since >= this.intervalMs) {
      this.fire(key);
      return;
    }
    this.timers.set(
      key,
      setTimeout(() => {
        this.timers.delete(key);
        this.fire(key);
      }, this.intervalMs - since),
    );
  }

  private fire(key: string): void {
    this.last.set(key, this.now());
    this.run(key);
  }

  cancel(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

// ---- thresholds ----

/**
 * Reads a limit from a number box: "" → null (no limit), a finite number → that number,
 * anything else → undefined (invalid). Accepts a decimal comma ("37,5").
 */
export function parseLimit(raw: string): number | null | undefined {
  const s = raw.trim().replace(',', '.');
  if (s === '') return null;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

// ---- charts ----

/** Bucket width and span of each chart view (as the server buckets them). */
export const VIEWS = {
  '1h': { spanMs: 60 * 60_000, bucketMs: 60_000, label: '1 hour' },
  '24h': { spanMs: 24 * 60 * 60_000, bucketMs: 15 * 60_000, label: '24 hours' },
  '7d': { spanMs: 7 * 24 * 60 * 60_000, bucketMs: 60 * 60_000, label: '7 days' },
  '30d': { spanMs: 30 * 24 * 60 * 60_000, bucketMs: 6 * 60 * 60_000, label: '30 days' },
} as const;

export type ViewName = keyof typeof VIEWS;

export function isView(v: string | null | undefined): v is ViewName {
  return !!v && Object.prototype.hasOwnProperty.call(VIEWS, v);
}

export interface BucketLike {
  start: string;
  min: number;
  avg: number;
  max: number;
  count: number;
}

/**
 * uPlot columns from buckets: x in seconds, then min, avg, max. Buckets are sorted; a gap
 * wider than one and a half buckets gets a null row so the line and band break there
 * rather than bridging hours without readings.
 */
export function bucketsToColumns(buckets: BucketLike[], bucketMs: number): [number[], (number | null)[], (number | null)[], (number | null)[]] {
  const rows = buckets
    .map((b) => ({ t: Date.parse(b.start), b }))
    .filter((r) => !Number.isNaN(r.t) && r.b.count > 0)
    .sort((a, b) => a.t - b.t);
  const x: number[] = [];
  const min: (number | null)[] = [];
  const avg: (number | null)[] = [];
  const max: (number | null)[] = [];
  let prev: number | null = null;
  for (const { t, b } of rows) {
    if (prev !== null && t - prev > bucketMs * 1.5) {
      x.push((prev + bucketMs) / 1000);
      min.push(null);
      avg.push(null);
      max.push(null);
    }
    x.push(t / 1000);
    min.push(b.min);
    avg.push(b.avg);
    max.push(b.max);
    prev = t;
  }
  return [x, min, avg, max];
}

/** Where a threshold comes from, for people. */
export function thresholdSourceLabel(source: string | null | undefined): string {
  switch (source) {
    case 'patient':
      return 'Set for this patient';
    case 'clinic':
      return 'Clinic default';
    default:
      return 'No limits';
  }
}
