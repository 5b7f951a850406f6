// The clinician's home: one tile per patient with the latest vitals, NEWS2 and a sparkline,
// and a page-level list of live alerts to acknowledge. Kept current by the /ws live feed.
import { api, serverNowMs } from '../api';
import { h, link, replaceChildren, svg } from '../dom';
import { LiveFeed, type FeedState } from '../feed';
import { ApiError, messageForError } from '../lib/errors';
import { dateInZone, formatInstant, timeInZone } from '../lib/time';
import {
  KeyedThrottle,
  addPoint,
  alertMetric,
  alertTitle,
  applyAlert,
  formatAge,
  formatValue,
  isStale,
  mergeReading,
  news2BandClass,
  news2BandLabel,
  news2ParameterLabel,
  news2Response,
  severityLabel,
  sortAlerts,
  sparklinePoints,
  unitLabel,
  type Point,
  type Reading,
} from '../lib/vitals';
import type { Alert, CurrentValue, DeviceState, News2, Patient, Practitioner, VitalsHistory } from '../types';
import { deviceKindLabel } from './patient';
import { empty, loadError, pageHeading, patientDisplayName, type PageContext } from '../ui';

/** The feed takes at most this many patients. */
const MAX_LIVE_PATIENTS = 200;
const NEWS2_THROTTLE_MS = 5_000;
const SPARK_WINDOW_MS = 60 * 60_000;
/** An acknowledgement sent on the socket with no answer in this time is retried over REST. */
const ACK_FALLBACK_MS = 8_000;
const SPARK_W = 160;
const SPARK_H = 36;
/** New alerts this close together share the announcement. */
const ANNOUNCE_GROUP_MS = 3_000;
/** Parallel REST requests while loading the tiles. */
const LOAD_CONCURRENCY = 4;

/** The vitals shown on a tile, in order. Blood pressure is systolic/diastolic in one row. */
const TILE_ROWS: { key: string; label: string; metrics: string[] }[] = [
  { key: 'heart_rate', label: 'Heart rate', metrics: ['heart_rate'] },
  { key: 'spo2', label: 'SpO₂', metrics: ['spo2'] },
  { key: 'blood_pressure', label: 'Blood pressure', metrics: ['systolic_bp', 'diastolic_bp'] },
  { key: 'respiratory_rate', label: 'Respiratory rate', metrics: ['respiratory_rate'] },
  { key: 'body_temperature', label: 'Temperature', metrics: ['body_temperature'] },
];
const SPARK_METRICS = ['heart_rate', 'spo2'] as const;

interface Tile {
  patient: Patient;
  name: string;
  live: boolean;
  latest: Map<string, Reading>;
  news2: News2 | null;
  news2Error: unknown;
  /** The patient's current devices (null until loaded). */
  devices: DeviceState[] | null;
  spark: Record<(typeof SPARK_METRICS)[number], Point[]>;
  /** Whether a snapshot of the feed has covered this patient (REST answers then come second). */
  snapshotSeen: boolean;
  el: HTMLElement;
  vitalsEl: HTMLElement;
  news2El: HTMLElement;
  sparkEl: HTMLElement;
  devicesEl: HTMLElement;
  alertsEl: HTMLElement;
}

/** Below this a device's battery is shown as low. */
const LOW_BATTERY_PERCENT = 20;

async function mapLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function dashboardPage(ctx: PageContext): Promise<void> {
  ctx.title('Dashboard');
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const me = ctx.me!;
  const signal = ctx.signal;

  const feedState = h('p', { class: 'feed-state', role: 'status', 'data-testid': 'feed-state', 'data-state': 'connecting' }, 'Live feed: connecting…');
  const announcer = h('div', { class: 'alert-announcer', role: 'alert', 'data-testid': 'alert-announcer' });
  const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const alertList = h('ul', { class: 'alert-list', 'aria-labelledby': 'alerts-heading' });
  const alertEmpty = h('p', { class: 'empty' }, 'No live alerts.');
  const alertsCard = h(
    'section',
    { class: 'card alerts-card', 'aria-labelledby': 'alerts-heading', 'data-testid': 'alerts' },
    h('h2', { id: 'alerts-heading' }, 'Alerts'),
    alertEmpty,
    alertList,
  );
  const tilesEl = h('div', { class: 'tiles' });
  const note = h('p', { class: 'muted' }, 'Latest readings of the last 24 hours; NEWS2 from the last hour. Updates live.');

  replaceChildren(ctx.main, pageHeading('Dashboard', feedState), announcer, status, alertsCard, h('section', { 'aria-labelledby': 'patients-heading' }, h('h2', { id: 'patients-heading', class: 'visually-hidden' }, 'Patients'), note, tilesEl));

  let patients: Patient[];
  try {
    patients = await api<Patient[]>('/patients', { signal });
  } catch (err) {
    replaceChildren(tilesEl, loadError(err));
    feedState.hidden = true;
    return;
  }
  if (signal.aborted) return;
  if (patients.length === 0) {
    replaceChildren(tilesEl, empty(me.role === 'admin' ? 'No patients yet.' : 'No patients yet. Patients appear here once you are on their care team.'));
    feedState.hidden = true;
    alertsCard.hidden = true;
    return;
  }

  // ---- state ----
  const tiles = new Map<string, Tile>();
  const alerts = new Map<string, Alert>();
  const names = new Map<string, string>([[me.id, 'you']]);
  let practitionersLoaded = false;
  const pendingAcks = new Map<string, { via: 'socket' | 'rest'; timer: ReturnType<typeof setTimeout> | null }>();
  const alertItems = new Map<string, { li: HTMLElement; key: string }>();

  const now = () => serverNowMs();
  let lastAnnounced = 0;
  const when = (iso: string | null) => {
    if (!iso) return '';
    const ms = Date.parse(iso);
    if (Number.isNaN(ms)) return iso;
    return dateInZone(ms, tz) === dateInZone(now(), tz) ? timeInZone(ms, tz) : formatInstant(iso, tz);
  };

  for (const [i, p] of patients.entries()) {
    const name = patientDisplayName(p);
    const headingId = `tile-${i}-name`;
    const vitalsEl = h('dl', { class: 'vitals' });
    const news2El = h('div', { class: 'news2-slot' });
    const sparkEl = h('div', { class: 'spark-slot' });
    const devicesEl = h('div', { class: 'tile-devices' });
    const alertsEl = h('div', { class: 'tile-alerts' });
    const el = h(
      'article',
      { class: 'tile', 'aria-labelledby': headingId, 'data-patient-id': p.id },
      h(
        'header',
        { class: 'tile-head' },
        h('h3', { id: headingId }, link(`/patients/${encodeURIComponent(p.id)}`, name)),
        h('span', { class: 'muted small mono' }, p.mrn),
        news2El,
      ),
      vitalsEl,
      sparkEl,
      devicesEl,
      alertsEl,
      h('p', { class: 'tile-links' }, link(`/patients/${encodeURIComponent(p.id)}/chart`, 'Chart and thresholds', { 'aria-label': `Chart and thresholds of ${name}` })),
    );
    tiles.set(p.id, {
      patient: p,
      name,
      live: i < MAX_LIVE_PATIENTS,
      latest: new Map(),
      news2: null,
      news2Error: null,
      devices: null,
      spark: { heart_rate: [], spo2: [] },
      snapshotSeen: false,
      el,
      vitalsEl,
      news2El,
      sparkEl,
      devicesEl,
      alertsEl,
    });
    tilesEl.append(el);
  }
  if (patients.length > MAX_LIVE_PATIENTS) {
    note.textContent += ` Live updates cover the first ${MAX_LIVE_PATIENTS} patients; open a patient's chart for the others.`;
  }

  // ---- rendering (coalesced per animation frame) ----
  const dirty = new Set<string>();
  let alertsDirty = false;
  let cancelFrame: (() => void) | null = null;
  const schedule = () => {
    if (cancelFrame || signal.aborted) return;
    const draw = () => {
      cancelFrame = null;
      for (const id of dirty) {
        const t = tiles.get(id);
        if (t) renderTile(t);
      }
      dirty.clear();
      if (alertsDirty) {
        alertsDirty = false;
        renderAlerts();
      }
    };
    // Hidden tabs get no animation frames; a timer keeps the title's alert count current there.
    if (document.hidden) {
      const t = window.setTimeout(draw, 250);
      cancelFrame = () => window.clearTimeout(t);
    } else {
      const f = requestAnimationFrame(draw);
      cancelFrame = () => cancelAnimationFrame(f);
    }
  };
  const onVisibility = () => {
    // A frame asked for while visible would wait until the tab shows again: ask anew.
    if (cancelFrame && document.hidden) {
      cancelFrame();
      cancelFrame = null;
      schedule();
    }
  };
  document.addEventListener('visibilitychange', onVisibility);
  const touch = (patientId: string) => {
    dirty.add(patientId);
    schedule();
  };
  const touchAlerts = (patientId?: string) => {
    alertsDirty = true;
    if (patientId) dirty.add(patientId);
    schedule();
  };

  const ageEl = (iso: string) => {
    const ms = Date.parse(iso);
    return h('time', { class: `vital-age${isStale(ms, now()) ? ' stale' : ''}`, datetime: iso, title: formatInstant(iso, tz) }, formatAge(ms, now()));
  };

  const renderVitals = (t: Tile) => {
    const breached = new Set<string>();
    for (const a of alerts.values()) {
      const m = alertMetric(a);
      if (a.patient_id === t.patient.id && m) breached.add(m);
    }
    replaceChildren(
      t.vitalsEl,
      TILE_ROWS.map((row) => {
        const readings = row.metrics.map((m) => t.latest.get(m));
        const have = readings.filter((r): r is Reading => !!r);
        const alerting = row.metrics.some((m) => breached.has(m));
        let dd: HTMLElement;
        if (have.length === 0) {
          dd = h('dd', null, h('span', { class: 'vital-value none' }, '—'), ' ', h('span', { class: 'muted small' }, 'no reading'));
        } else {
          const value = readings.map((r, i) => (r ? formatValue(row.metrics[i]!, r.value) : '—')).join('/');
          const unit = unitLabel(have[0]!.unit);
          // Blood pressure: the older of the two readings sets the age shown.
          const oldest = have.reduce((a, b) => (Date.parse(a.time) <= Date.parse(b.time) ? a : b));
          dd = h('dd', null, h('span', { class: 'vital-value', 'data-testid': `value-${row.key}` }, value), unit ? h('span', { class: 'vital-unit' }, ` ${unit}`) : null, ' ', ageEl(oldest.time));
        }
        return h('div', { class: `vital${alerting ? ' vital-alert' : ''}`, 'data-metric': row.key }, h('dt', null, row.label, alerting ? h('span', { class: 'visually-hidden' }, ' (alert)') : null), dd);
      }),
    );
  };

  const renderNews2 = (t: Tile) => {
    const n = t.news2;
    if (!n) {
      replaceChildren(t.news2El, t.news2Error ? h('p', { class: 'news2 news2-unknown', title: messageForError(t.news2Error) }, 'NEWS2 unavailable') : h('p', { class: 'news2 news2-unknown' }, 'NEWS2 …'));
      return;
    }
    const allMissing = n.missing.length >= 7;
    const missingText = n.missing.length ? `Not measured in the last hour: ${n.missing.map(news2ParameterLabel).join(', ')}.` : '';
    replaceChildren(
      t.news2El,
      allMissing
        ? h('p', { class: 'news2 news2-unknown', 'data-testid': 'news2', title: missingText }, h('span', { class: 'news2-label' }, 'NEWS2'), ' ', h('span', { class: 'news2-total' }, '—'), ' ', h('span', { class: 'news2-band' }, 'no recent readings'))
        : h(
            'p',
            { class: `news2 ${news2BandClass(n.band)}`, 'data-testid': 'news2', 'data-band': n.band, title: [news2Response(n.band), missingText].filter(Boolean).join('. ') },
            h('span', { class: 'news2-label' }, 'NEWS2'),
            ' ',
            h('span', { class: 'news2-total' }, String(n.total)),
            ' ',
            h('span', { class: 'news2-band' }, news2BandLabel(n.band)),
            n.missing.length ? h('span', { class: 'news2-partial' }, ` · ${7 - n.missing.length} of 7 measured`) : null,
          ),
    );
  };

  const renderSpark = (t: Tile) => {
    const to = now();
    const from = to - SPARK_WINDOW_MS;
    const metric = SPARK_METRICS.find((m) => t.spark[m].some((p) => p.t >= from)) ?? null;
    if (!metric) {
      replaceChildren(t.sparkEl, h('p', { class: 'spark-none muted small' }, 'No heart rate or SpO₂ in the last hour.'));
      return;
    }
    const pts = t.spark[metric].filter((p) => p.t >= from);
    const values = pts.map((p) => p.v);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const unit = unitLabel(metric === 'heart_rate' ? '/min' : '%');
    const label = `${metric === 'heart_rate' ? 'Heart rate' : 'SpO₂'}, last hour: ${lo === hi ? formatValue(metric, lo) : `${formatValue(metric, lo)} to ${formatValue(metric, hi)}`} ${unit}`;
    const line = sparklinePoints(pts, from, to, SPARK_W, SPARK_H, 3);
    const last = line.split(' ').pop()!.split(',');
    const graphic = svg(
      'svg',
      { class: `sparkline spark-${metric}`, viewBox: `0 0 ${SPARK_W} ${SPARK_H}`, width: SPARK_W, height: SPARK_H, role: 'img', 'aria-label': label, preserveAspectRatio: 'none' },
      svg('title', {}),
      svg('polyline', { points: line, fill: 'none', 'vector-effect': 'non-scaling-stroke' }),
      svg('circle', { cx: last[0], cy: last[1], r: 2.5 }),
    );
    graphic.querySelector('title')!.textContent = label;
    replaceChildren(t.sparkEl, h('figure', { class: 'spark' }, graphic, h('figcaption', { class: 'muted small' }, `${metric === 'heart_rate' ? 'Heart rate' : 'SpO₂'} · 1 h`)));
  };

  const renderTileAlerts = (t: Tile) => {
    const mine = sortAlerts([...alerts.values()].filter((a) => a.patient_id === t.patient.id));
    const open = mine.filter((a) => a.status === 'open');
    const acked = mine.length - open.length;
    t.el.classList.toggle('has-open-alert', open.length > 0);
    const top = open[0]?.severity;
    for (const s of ['critical', 'high', 'medium', 'low']) t.el.classList.toggle(`alert-${s}`, top === s);
    if (mine.length === 0) {
      replaceChildren(t.alertsEl);
      return;
    }
    replaceChildren(
      t.alertsEl,
      open.length
        ? h(
            'ul',
            { class: 'tile-alert-list', 'aria-label': `Open alerts of ${t.name}` },
            open.map((a) => h('li', { class: `sev-${a.severity}` }, h('span', { class: `badge severity-${a.severity}` }, severityLabel(a.severity)), ' ', alertTitle(a))),
          )
        : null,
      acked ? h('p', { class: 'muted small' }, `${acked} acknowledged alert${acked === 1 ? '' : 's'}`) : null,
    );
  };

  const renderDevices = (t: Tile) => {
    if (!t.devices) return;
    if (!t.devices.length) {
      replaceChildren(t.devicesEl, h('p', { class: 'muted small' }, 'No device assigned.'));
      return;
    }
    replaceChildren(
      t.devicesEl,
      h(
        'ul',
        { class: 'devices', 'aria-label': `Devices of ${t.name}` },
        t.devices.map((d) => {
          const state = d.online === null ? 'never heard from' : d.online ? 'online' : 'offline';
          const low = d.battery_percent !== null && d.battery_percent < LOW_BATTERY_PERCENT;
          return h(
            'li',
            { class: `device device-${d.online === null ? 'unknown' : d.online ? 'online' : 'offline'}`, 'data-testid': 'device', 'data-device-id': d.device_id },
            h('span', { class: 'device-kind' }, deviceKindLabel(d.kind)),
            ' · ',
            h('span', { class: 'device-state' }, state),
            d.last_seen ? [' · seen ', h('time', { class: 'vital-age', datetime: d.last_seen, title: formatInstant(d.last_seen, tz) }, formatAge(Date.parse(d.last_seen), now()))] : null,
            d.battery_percent !== null ? [' · ', h('span', { class: low ? 'battery battery-low' : 'battery' }, `battery ${Math.round(d.battery_percent)} %${low ? ' (low)' : ''}`)] : null,
          );
        }),
      ),
    );
  };

  const loadDevices = async (t: Tile) => {
    try {
      t.devices = await api<DeviceState[]>(`/patients/${encodeURIComponent(t.patient.id)}/devices/status`, { signal });
      renderDevices(t);
    } catch (err) {
      if (signal.aborted) return;
      // Device status is secondary: keep what is shown, the next refresh tries again.
    }
  };

  // A reading from a patient whose device is not shown online: its status
  // (and battery) has just changed, so ask at once (at most every 5 s).
  const deviceThrottle = new KeyedThrottle(5_000, (pid) => {
    const t = tiles.get(pid);
    if (t) void loadDevices(t);
  });

  const renderTile = (t: Tile) => {
    renderVitals(t);
    renderNews2(t);
    renderSpark(t);
    renderDevices(t);
    renderTileAlerts(t);
  };

  const alertKey = (a: Alert) => `${a.status}|${a.severity}|${a.updated_at}|${pendingAcks.has(a.id) ? 'p' : ''}|${a.acknowledged_by ? (names.get(a.acknowledged_by) ?? '') : ''}`;

  const alertItem = (a: Alert): HTMLElement => {
    const t = tiles.get(a.patient_id);
    const who = t?.name ?? 'Patient';
    const title = alertTitle(a);
    const pending = pendingAcks.has(a.id);
    const ackBy = a.acknowledged_by ? (names.get(a.acknowledged_by) ?? 'another user') : 'someone';
    return h(
      'li',
      { class: `alert-item sev-${a.severity} status-${a.status}`, 'data-alert-id': a.id, 'data-status': a.status, 'data-rule': a.rule, tabindex: '-1' },
      h(
        'div',
        { class: 'alert-main' },
        h('span', { class: `badge severity-${a.severity}` }, severityLabel(a.severity)),
        ' ',
        h('strong', null, t ? link(`/patients/${encodeURIComponent(a.patient_id)}/chart`, who) : who),
        ' — ',
        h('span', { class: 'alert-title' }, title),
      ),
      h(
        'div',
        { class: 'alert-meta muted small' },
        h('span', null, 'Opened ', h('time', { datetime: a.opened_at, title: formatInstant(a.opened_at, tz) }, when(a.opened_at))),
        a.status === 'acknowledged'
          ? h('span', { class: 'alert-ack', 'data-testid': 'acknowledged' }, ` · Acknowledged by ${ackBy}${a.acknowledged_at ? ` at ${when(a.acknowledged_at)}` : ''}`)
          : null,
      ),
      a.status === 'open'
        ? h(
            'button',
            {
              type: 'button',
              class: 'button small primary',
              disabled: pending,
              'aria-label': `Acknowledge: ${who}, ${title}`,
              onclick: () => acknowledge(a.id),
            },
            pending ? 'Acknowledging…' : 'Acknowledge',
          )
        : null,
    );
  };

  const renderAlerts = () => {
    const sorted = sortAlerts(alerts.values());
    const open = sorted.filter((a) => a.status === 'open').length;
    ctx.title(open ? `(${open}) Dashboard` : 'Dashboard');
    alertEmpty.hidden = sorted.length > 0;
    const focused = document.activeElement;
    const keep = new Set(sorted.map((a) => a.id));
    for (const [id, item] of alertItems) {
      if (!keep.has(id)) {
        item.li.remove();
        alertItems.delete(id);
      }
    }
    let focusLost: HTMLElement | null = null;
    sorted.forEach((a, i) => {
      const key = alertKey(a);
      let item = alertItems.get(a.id);
      if (!item || item.key !== key) {
        const li = alertItem(a);
        if (item) {
          if (item.li.contains(focused)) focusLost = li;
          item.li.replaceWith(li);
        }
        item = { li, key };
        alertItems.set(a.id, item);
      }
      if (alertList.children[i] !== item.li) alertList.insertBefore(item.li, alertList.children[i] ?? null);
    });
    // A re-drawn alert under the keyboard focus keeps it (on its button, else the item).
    const target = focusLost as HTMLElement | null;
    if (target) (target.querySelector<HTMLElement>('button:not([disabled])') ?? target).focus();
    else if (focused instanceof HTMLElement && focused !== document.activeElement && document.contains(focused)) focused.focus();
  };

  // ---- names of who acknowledged ----
  const learnNames = async () => {
    if (practitionersLoaded) return;
    practitionersLoaded = true;
    try {
      const list = await api<Practitioner[]>('/practitioners', { signal });
      for (const p of list) if (!names.has(p.user_id)) names.set(p.user_id, p.name);
      touchAlerts();
    } catch {
      // "another user" it is
    }
  };

  // ---- state changes ----
  const setAlert = (a: Alert): boolean => {
    const changed = applyAlert(alerts, a);
    if (a.status !== 'open') {
      settleAck(a.id);
      // Announced as new, now taken care of: the announcement goes.
      for (const p of announcer.querySelectorAll<HTMLElement>('[data-alert-id]')) if (p.dataset['alertId'] === a.id) p.remove();
    }
    if (a.acknowledged_by && !names.has(a.acknowledged_by)) void learnNames();
    if (changed) touchAlerts(a.patient_id);
    return changed;
  };

  const replacePatientAlerts = (patientId: string, list: Alert[]) => {
    for (const [id, a] of alerts) if (a.patient_id === patientId && !list.some((x) => x.id === id)) alerts.delete(id);
    for (const a of list) setAlert(a);
    touchAlerts(patientId);
  };

  const news2Throttle = new KeyedThrottle(NEWS2_THROTTLE_MS, (pid) => void loadNews2(pid));
  const loadNews2 = async (pid: string) => {
    const t = tiles.get(pid);
    if (!t) return;
    try {
      t.news2 = await api<News2>(`/patients/${encodeURIComponent(pid)}/news2`, { signal });
      t.news2Error = null;
    } catch (err) {
      if (signal.aborted) return;
      t.news2Error = err;
    }
    touch(pid);
  };

  const addReading = (t: Tile, r: Reading, live: boolean): boolean => {
    const changed = mergeReading(t.latest, r);
    if (live && (r.metric === 'heart_rate' || r.metric === 'spo2')) {
      const ms = Date.parse(r.time);
      if (!Number.isNaN(ms)) t.spark[r.metric] = addPoint(t.spark[r.metric], { t: ms, v: r.value }, now(), SPARK_WINDOW_MS);
    }
    return changed;
  };

  // ---- acknowledging ----
  const settleAck = (id: string) => {
    const p = pendingAcks.get(id);
    if (!p) return;
    if (p.timer) clearTimeout(p.timer);
    pendingAcks.delete(id);
    alertsDirty = true;
    schedule();
  };

  const ackOverRest = async (id: string) => {
    const a = alerts.get(id);
    const p = pendingAcks.get(id);
    if (p) {
      if (p.timer) clearTimeout(p.timer);
      pendingAcks.set(id, { via: 'rest', timer: null });
    }
    try {
      const updated = await api<Alert>(`/alerts/${encodeURIComponent(id)}/acknowledge`, { method: 'POST', signal });
      setAlert(updated);
      status.textContent = 'Alert acknowledged.';
    } catch (err) {
      if (signal.aborted) return;
      settleAck(id);
      if (err instanceof ApiError && (err.code === 'not_open' || err.status === 409) && a) {
        // Someone else was quicker (or it resolved): show the alert as it is now.
        await refreshAlerts(a.patient_id);
        status.textContent = 'This alert was already acknowledged or has resolved.';
      } else if (err instanceof ApiError && err.status === 404 && a) {
        await refreshAlerts(a.patient_id);
      } else {
        announcer.replaceChildren(h('p', null, `The alert could not be acknowledged: ${messageForError(err)}`));
      }
    }
  };

  const acknowledge = (id: string) => {
    if (pendingAcks.has(id)) return;
    announcer.replaceChildren();
    if (feed.ackAlert(id)) {
      pendingAcks.set(id, { via: 'socket', timer: setTimeout(() => void ackOverRest(id), ACK_FALLBACK_MS) });
      alertsDirty = true;
      schedule();
    } else {
      pendingAcks.set(id, { via: 'rest', timer: null });
      alertsDirty = true;
      schedule();
      void ackOverRest(id);
    }
  };

  const refreshAlerts = async (pid: string) => {
    try {
      replacePatientAlerts(pid, await api<Alert[]>(`/patients/${encodeURIComponent(pid)}/alerts`, { signal }));
    } catch {
      // the feed keeps trying
    }
  };

  // ---- the live feed ----
  const livePatients = patients.slice(0, MAX_LIVE_PATIENTS).map((p) => p.id);
  const showFeedState = (state: FeedState, info: { retryInMs?: number; reason?: string }) => {
    feedState.dataset['state'] = state;
    feedState.className = `feed-state feed-${state}`;
    switch (state) {
      case 'connected':
        feedState.textContent = 'Live feed: connected';
        break;
      case 'connecting':
        feedState.textContent = 'Live feed: connecting…';
        break;
      case 'reconnecting':
        feedState.textContent = info.retryInMs !== undefined ? `Live feed: reconnecting (next try in ${Math.max(1, Math.round(info.retryInMs / 1000))} s)…` : 'Live feed: reconnecting…';
        break;
      case 'closed':
        feedState.textContent = `Live feed: stopped${info.reason ? `. ${info.reason}` : ''}`;
        break;
    }
  };
  const feed = new LiveFeed(livePatients, {
    state: showFeedState,
    snapshot: (m, resumed) => {
      for (const ps of m.patients) {
        const t = tiles.get(ps.patient_id);
        if (!t) continue;
        t.snapshotSeen = true;
        for (const r of ps.latest) addReading(t, r, true);
        touch(t.patient.id);
        if (resumed) news2Throttle.call(t.patient.id);
      }
      // The snapshot holds every live alert of these patients: anything else has resolved.
      const covered = new Set(m.patients.map((p) => p.patient_id));
      for (const pid of covered) {
        replacePatientAlerts(
          pid,
          m.alerts.filter((a) => a.patient_id === pid),
        );
      }
    },
    sample: (m) => {
      const t = tiles.get(m.patient_id);
      if (!t) return;
      addReading(t, { metric: m.metric, value: m.value, unit: m.unit, time: m.time }, true);
      touch(t.patient.id);
      if (!t.devices || t.devices.some((d) => d.online !== true)) deviceThrottle.call(t.patient.id);
    },
    news2: (m) => {
      const t = tiles.get(m.patient_id);
      if (!t) return;
      t.news2 = { total: m.total, band: m.band, missing: m.missing, spo2_scale: m.spo2_scale };
      t.news2Error = null;
      touch(t.patient.id);
    },
    alert: (m, replayed) => {
      const changed = setAlert(m.alert);
      // A device went quiet or came back: its status line follows at once.
      if (m.alert.rule.startsWith('offline:')) {
        const t = tiles.get(m.alert.patient_id);
        if (t) void loadDevices(t);
      }
      if (!replayed && changed && (m.event === 'opened' || m.event === 'escalated') && m.alert.status === 'open') {
        const t = tiles.get(m.alert.patient_id);
        // Alerts raised together (a threshold and NEWS2 from one reading) are announced together.
        if (Date.now() - lastAnnounced > ANNOUNCE_GROUP_MS) announcer.replaceChildren();
        lastAnnounced = Date.now();
        for (const p of announcer.querySelectorAll<HTMLElement>('[data-alert-id]')) if (p.dataset['alertId'] === m.alert.id) p.remove();
        announcer.append(
          h('p', { 'data-alert-id': m.alert.id }, h('strong', null, `${m.event === 'escalated' ? 'Alert escalated' : 'New alert'} (${severityLabel(m.alert.severity).toLowerCase()}): `), `${t?.name ?? 'Patient'} — ${alertTitle(m.alert)}`),
        );
      }
      if (m.event === 'acknowledged' && m.alert.acknowledged_by === me.id && !replayed) status.textContent = 'Alert acknowledged.';
    },
    error: (e) => {
      // The server names the alert a refused acknowledgement was about.
      const socketAcks = [...pendingAcks].filter(([id, p]) => p.via === 'socket' && (e.alert_id === undefined || e.alert_id === id)).map(([id]) => id);
      if (socketAcks.length && ['not_open', 'not_found', 'forbidden', 'unavailable'].includes(e.code)) {
        for (const id of socketAcks) {
          const a = alerts.get(id);
          settleAck(id);
          if (a && (e.code === 'not_open' || e.code === 'not_found')) void refreshAlerts(a.patient_id);
        }
        if (e.code === 'not_open') status.textContent = 'This alert was already acknowledged or has resolved.';
        else announcer.replaceChildren(h('p', null, `The alert could not be acknowledged: ${e.code === 'forbidden' ? 'you may not acknowledge it.' : e.message}`));
      }
    },
  });

  // ---- clock: reading ages, sliding sparklines ----
  let ticks = 0;
  const clock = window.setInterval(() => {
    ticks += 1;
    const n = now();
    for (const el of ctx.main.querySelectorAll<HTMLTimeElement>('time.vital-age')) {
      const ms = Date.parse(el.dateTime);
      const text = formatAge(ms, n);
      if (el.textContent !== text) el.textContent = text;
      el.classList.toggle('stale', isStale(ms, n));
    }
    if (ticks % 30 === 0) for (const id of tiles.keys()) touch(id);
    // Liveness and battery change slowly; the feed does not carry them.
    if (ticks % 60 === 0) void mapLimit([...tiles.values()].filter((t) => t.live), LOAD_CONCURRENCY, loadDevices);
  }, 1000);

  signal.addEventListener(
    'abort',
    () => {
      feed.stop();
      window.clearInterval(clock);
      news2Throttle.cancel();
      deviceThrottle.cancel();
      cancelFrame?.();
      document.removeEventListener('visibilitychange', onVisibility);
      for (const p of pendingAcks.values()) if (p.timer) clearTimeout(p.timer);
    },
    { once: true },
  );

  for (const t of tiles.values()) renderTile(t);
  renderAlerts();
  feed.start();

  // ---- first load over REST (the page works while the feed connects, or if it cannot) ----
  void mapLimit([...tiles.values()], LOAD_CONCURRENCY, async (t) => {
    if (signal.aborted) return;
    const base = `/patients/${encodeURIComponent(t.patient.id)}`;
    void loadDevices(t);
    const [latest, news2, alertList, ...history] = await Promise.allSettled([
      api<CurrentValue[]>(`${base}/vitals/latest`, { signal }),
      api<News2>(`${base}/news2`, { signal }),
      api<Alert[]>(`${base}/alerts`, { signal }),
      ...SPARK_METRICS.map((m) => api<VitalsHistory>(`${base}/vitals/${m}`, { query: { view: '1h' }, signal })),
    ]);
    if (signal.aborted) return;
    if (latest.status === 'fulfilled') for (const r of latest.value) addReading(t, r, false);
    if (news2.status === 'fulfilled') {
      if (!t.news2) t.news2 = news2.value;
    } else t.news2Error = news2.reason;
    // The feed's snapshot is newer than this answer when it came first.
    if (alertList.status === 'fulfilled' && !t.snapshotSeen) for (const a of alertList.value) setAlert(a);
    SPARK_METRICS.forEach((m, i) => {
      const res = history[i];
      if (res?.status !== 'fulfilled') return;
      let pts = t.spark[m];
      for (const b of res.value.buckets) {
        const start = Date.parse(b.start);
        // One point per 1-minute bucket, in its middle (live samples keep their own times).
        if (!Number.isNaN(start) && b.count > 0) pts = addPoint(pts, { t: Math.min(start + 30_000, now()), v: b.avg }, now(), SPARK_WINDOW_MS);
      }
      t.spark[m] = pts;
    });
    touch(t.patient.id);
  });
}
