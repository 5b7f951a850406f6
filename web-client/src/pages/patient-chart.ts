// A patient's vitals history (min/avg/max per bucket over 1 h, 24 h, 7 d or 30 d, drawn with
// uPlot) and the alert threshold editor.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { api } from '../api';
import { h, replaceChildren, uid } from '../dom';
import { ApiError, messageForError, messageForField } from '../lib/errors';
import { formatInstant } from '../lib/time';
import {
  CHART_METRICS,
  METRIC_UNIT,
  THRESHOLD_METRICS,
  VIEWS,
  bucketsToColumns,
  formatValue,
  isView,
  metricLabel,
  parseLimit,
  thresholdSourceLabel,
  unitLabel,
  type ViewName,
} from '../lib/vitals';
import type { News2Settings, Patient, Threshold, VitalsHistory } from '../types';
import { isAbort, loadError, pageHeading, patientDisplayName, type PageContext } from '../ui';

const CHART_HEIGHT = 200;
const COLOURS = { avg: '#0b5c6b', band: 'rgba(11, 92, 107, 0.16)', edge: 'rgba(11, 92, 107, 0.45)', low: '#a4262c', high: '#a4262c' };

interface ThresholdRow extends Omit<Threshold, 'source'> {
  source: Threshold['source'] | 'none';
}

export async function patientChartPage(ctx: PageContext): Promise<void> {
  const id = ctx.params['id']!;
  const base = `/patients/${encodeURIComponent(id)}`;
  const tz = ctx.clinic?.time_zone ?? 'UTC';
  const signal = ctx.signal;
  const canEdit = ctx.me?.role === 'clinician';

  let patient: Patient;
  try {
    patient = await api<Patient>(base, { signal });
  } catch (err) {
    ctx.title('Vitals chart');
    replaceChildren(ctx.main, pageHeading('Vitals chart'), loadError(err), h('p', null, h('a', { href: '/dashboard' }, 'Back to the dashboard')));
    return;
  }
  const name = patientDisplayName(patient);
  ctx.title(`${name}: vitals`);

  let view: ViewName = isView(ctx.query.get('view')) ? (ctx.query.get('view') as ViewName) : '24h';
  const status = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' });
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  const viewButtons = (Object.keys(VIEWS) as ViewName[]).map((v) =>
    h('button', { type: 'button', class: 'button small secondary', 'aria-pressed': v === view ? 'true' : 'false', 'data-view': v, 'aria-label': `Last ${VIEWS[v].label}`, onclick: () => setView(v) }, v),
  );
  const chartsEl = h('div', { class: 'charts' });
  const thresholdsEl = h('section', { class: 'card', 'aria-labelledby': 'thresholds-heading' }, h('h2', { id: 'thresholds-heading' }, 'Alert thresholds'), h('p', { class: 'loading' }, 'Loading thresholds…'));
  const scaleEl = h('section', { class: 'card', 'aria-labelledby': 'scale-heading', 'data-testid': 'spo2-scale' }, h('h2', { id: 'scale-heading' }, 'NEWS2 SpO₂ scale'), h('p', { class: 'loading' }, 'Loading…'));

  replaceChildren(
    ctx.main,
    h('p', { class: 'breadcrumb' }, h('a', { href: '/dashboard' }, 'Dashboard'), ' / ', h('a', { href: `/patients/${encodeURIComponent(id)}` }, name), ' / Vitals'),
    pageHeading(`${name}: vitals`, h('p', { class: 'subtitle' }, 'MRN ', h('span', { class: 'mono' }, patient.mrn))),
    alert,
    status,
    h(
      'section',
      { 'aria-labelledby': 'history-heading' },
      h('div', { class: 'history-head' }, h('h2', { id: 'history-heading' }, 'History'), h('div', { class: 'view-buttons', role: 'group', 'aria-label': 'Period' }, viewButtons)),
      h('p', { class: 'muted' }, `Lowest, average and highest reading per period; times in the clinic's time zone (${tz}). Dashed lines: alert thresholds.`),
      chartsEl,
    ),
    thresholdsEl,
    scaleEl,
  );

  // ---- thresholds (also drawn on the charts) ----
  let thresholds = new Map<string, ThresholdRow>();
  const plots = new Map<string, uPlot>();
  const loadThresholds = async () => {
    const list = await api<Threshold[]>(`${base}/thresholds`, { signal });
    thresholds = new Map(list.map((t) => [t.metric, t]));
    // New limits may change the y range: recompute the scales, then redraw.
    for (const p of plots.values()) p.setData(p.data, true);
  };

  // ---- charts ----
  const observers: ResizeObserver[] = [];
  const destroyCharts = () => {
    for (const o of observers) o.disconnect();
    observers.length = 0;
    for (const p of plots.values()) p.destroy();
    plots.clear();
  };
  signal.addEventListener('abort', destroyCharts, { once: true });

  const thresholdLines: uPlot.Plugin = {
    hooks: {
      draw: (u: uPlot) => {
        const metric = (u.root.closest('[data-metric]') as HTMLElement | null)?.dataset['metric'];
        const t = metric ? thresholds.get(metric) : undefined;
        if (!t) return;
        const c = u.ctx;
        const { left, top, width, height } = u.bbox;
        c.save();
        c.setLineDash([6 * uPlot.pxRatio, 4 * uPlot.pxRatio]);
        c.lineWidth = 1.5 * uPlot.pxRatio;
        for (const [v, colour] of [
          [t.low, COLOURS.low],
          [t.high, COLOURS.high],
        ] as const) {
          if (v === null) continue;
          const y = u.valToPos(v, 'y', true);
          if (y < top || y > top + height) continue;
          c.strokeStyle = colour;
          c.beginPath();
          c.moveTo(left, y);
          c.lineTo(left + width, y);
          c.stroke();
        }
        c.restore();
      },
    },
  };

  /** The data's range with some air, widened to show the thresholds; SpO₂ stops at 100 %. */
  const yRange = (metric: string, dmin: number | null, dmax: number | null): uPlot.Range.MinMax => {
    const t = thresholds.get(metric);
    const values = [dmin, dmax, t?.low ?? null, t?.high ?? null].filter((v): v is number => v !== null && Number.isFinite(v));
    if (values.length === 0) return [0, 1];
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = hi > lo ? (hi - lo) * 0.08 : Math.max(1, Math.abs(lo) * 0.05);
    lo -= pad;
    hi += pad;
    if (metric === 'spo2') hi = Math.min(hi, 100.5);
    if (lo < 0 && (dmin ?? 0) >= 0) lo = 0;
    return [lo, hi];
  };

  const chartCard = (metric: string, hist: VitalsHistory | null, error: unknown): HTMLElement => {
    const headingId = uid(`chart-${metric}`);
    const unit = unitLabel(hist?.unit ?? METRIC_UNIT[metric as keyof typeof METRIC_UNIT]);
    const card = h('section', { class: 'card chart-card', 'aria-labelledby': headingId, 'data-metric': metric }, h('h3', { id: headingId }, metricLabel(metric), unit ? h('span', { class: 'muted' }, ` (${unit})`) : null));
    if (error) {
      card.append(loadError(error));
      return card;
    }
    const buckets = hist?.buckets.filter((b) => b.count > 0) ?? [];
    if (buckets.length === 0) {
      card.append(h('p', { class: 'empty' }, `No readings in the last ${VIEWS[view].label}.`));
      return card;
    }
    const lows = buckets.map((b) => b.min);
    const highs = buckets.map((b) => b.max);
    const lo = Math.min(...lows);
    const hi = Math.max(...highs);
    const latest = buckets.reduce((a, b) => (a.start > b.start ? a : b));
    const readings = buckets.reduce((n, b) => n + b.count, 0);
    const summary = `${readings} reading${readings === 1 ? '' : 's'} in the last ${VIEWS[view].label}; lowest ${formatValue(metric, lo)}, highest ${formatValue(metric, hi)}${unit ? ` ${unit}` : ''}; latest period average ${formatValue(metric, latest.avg)}.`;
    const plotEl = h('div', { class: 'plot', role: 'img', 'aria-label': `${metricLabel(metric)} chart. ${summary}` });
    card.append(
      plotEl,
      h('p', { class: 'muted small chart-summary' }, summary),
      h(
        'details',
        { class: 'chart-table' },
        h('summary', null, 'Show as table'),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            null,
            h('caption', { class: 'visually-hidden' }, `${metricLabel(metric)}, last ${VIEWS[view].label}`),
            h('thead', null, h('tr', null, ['Period from', 'Lowest', 'Average', 'Highest', 'Readings'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              null,
              [...buckets]
                .sort((a, b) => b.start.localeCompare(a.start))
                .map((b) => h('tr', null, h('td', { class: 'nowrap' }, formatInstant(b.start, tz)), h('td', null, formatValue(metric, b.min)), h('td', null, formatValue(metric, b.avg)), h('td', null, formatValue(metric, b.max)), h('td', null, String(b.count)))),
            ),
          ),
        ),
      ),
    );
    const { spanMs, bucketMs } = VIEWS[view];
    const data = bucketsToColumns(buckets, bucketMs) as uPlot.AlignedData;
    const nowS = Date.now() / 1000;
    const opts: uPlot.Options = {
      width: 600,
      height: CHART_HEIGHT,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), tz),
      scales: {
        x: { time: true, range: () => [nowS - spanMs / 1000, nowS] },
        y: { range: (_u, dmin, dmax) => yRange(metric, dmin, dmax) },
      },
      axes: [{}, { size: 50 }],
      series: [
        {},
        { label: 'Lowest', stroke: COLOURS.edge, width: 1, points: { show: false } },
        { label: 'Average', stroke: COLOURS.avg, width: 2, points: { show: buckets.length < 40, size: 5 } },
        { label: 'Highest', stroke: COLOURS.edge, width: 1, points: { show: false } },
      ],
      bands: [{ series: [3, 1], fill: COLOURS.band }],
      plugins: [thresholdLines],
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
    };
    // Mounted once the card is in the page (uPlot measures its container).
    queueMicrotask(() => {
      if (signal.aborted || !plotEl.isConnected) return;
      const plot = new uPlot({ ...opts, width: Math.max(280, plotEl.clientWidth) }, data, plotEl);
      plots.set(metric, plot);
      const ro = new ResizeObserver(() => {
        const w = Math.max(280, plotEl.clientWidth);
        if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height: CHART_HEIGHT });
      });
      ro.observe(plotEl);
      observers.push(ro);
    });
    return card;
  };

  let loadSeq = 0;
  let thresholdsLoaded: Promise<unknown> = Promise.resolve();
  const loadCharts = async () => {
    const seq = ++loadSeq;
    chartsEl.setAttribute('aria-busy', 'true');
    const results = await Promise.allSettled(CHART_METRICS.map((m) => api<VitalsHistory>(`${base}/vitals/${m}`, { query: { view }, signal })));
    // The y range takes in the thresholds: have them first.
    await thresholdsLoaded.catch(() => {});
    if (signal.aborted || seq !== loadSeq) return;
    destroyCharts();
    replaceChildren(
      chartsEl,
      CHART_METRICS.map((m, i) => {
        const r = results[i]!;
        return r.status === 'fulfilled' ? chartCard(m, r.value, null) : chartCard(m, null, r.reason);
      }),
    );
    chartsEl.removeAttribute('aria-busy');
  };

  const setView = (v: ViewName) => {
    if (v === view) return;
    view = v;
    for (const b of viewButtons) b.setAttribute('aria-pressed', b.dataset['view'] === v ? 'true' : 'false');
    const url = new URL(location.href);
    url.searchParams.set('view', v);
    history.replaceState(null, '', url.pathname + url.search);
    status.textContent = `Showing the last ${VIEWS[v].label}.`;
    void loadCharts();
  };

  // ---- threshold editor ----
  const fmt = (v: number | null) => (v === null || v === undefined ? '' : String(v));

  const thresholdRow = (metric: string): HTMLElement => {
    const t: ThresholdRow = thresholds.get(metric) ?? { metric, unit: METRIC_UNIT[metric as keyof typeof METRIC_UNIT] ?? '', low: null, high: null, source: 'none' };
    const label = metricLabel(metric);
    const unit = unitLabel(t.unit);
    const formId = `thr-form-${metric}`;
    const rowError = h('p', { class: 'field-error', hidden: true, role: 'alert' });
    const input = (side: 'low' | 'high') => {
      const inputId = `thr-${metric}-${side}`;
      const errorId = `${inputId}-error`;
      const control = h('input', {
        id: inputId,
        name: side,
        type: 'text',
        inputmode: 'decimal',
        autocomplete: 'off',
        class: 'thr-input',
        form: formId,
        value: fmt(t[side]),
        readonly: !canEdit,
        placeholder: 'none',
      });
      const error = h('p', { id: errorId, class: 'field-error', hidden: true });
      const wrap = h('div', { class: 'thr-field' }, h('label', { for: inputId, class: 'visually-hidden' }, `${label} ${side} limit${unit ? ` (${unit})` : ''}`), control, error);
      return { control, error, wrap };
    };
    const low = input('low');
    const high = input('high');
    const fields = { low, high };
    const clearErrors = () => {
      rowError.hidden = true;
      rowError.textContent = '';
      for (const f of [low, high]) {
        f.error.hidden = true;
        f.error.textContent = '';
        f.control.removeAttribute('aria-invalid');
        f.control.removeAttribute('aria-describedby');
      }
    };
    const fieldError = (side: 'low' | 'high', message: string) => {
      const f = fields[side];
      f.error.textContent = message;
      f.error.hidden = false;
      f.control.setAttribute('aria-invalid', 'true');
      f.control.setAttribute('aria-describedby', f.error.id);
    };
    const showError = (err: unknown) => {
      const field = err instanceof ApiError ? err.field : null;
      const side = field === 'low' || field === 'high' ? field : null;
      if (side) {
        fieldError(side, messageForField(messageForError(err), side));
        fields[side].control.focus();
      } else {
        rowError.textContent = messageForError(err);
        rowError.hidden = false;
      }
    };
    const saveButton = h('button', { type: 'submit', class: 'button small primary', form: formId, 'aria-label': `Save ${label} thresholds` }, 'Save');
    const resetButton = h(
      'button',
      {
        type: 'button',
        class: 'button small secondary',
        disabled: t.source !== 'patient',
        'aria-label': `Reset ${label} to the clinic default`,
        onclick: async () => {
          clearErrors();
          resetButton.disabled = true;
          try {
            await api<void>(`${base}/thresholds/${encodeURIComponent(metric)}`, { method: 'PUT', body: { low: null, high: null } });
            await loadThresholds();
            redrawRow(metric, `${label}: back to the clinic default.`);
          } catch (err) {
            resetButton.disabled = false;
            showError(err);
          }
        },
      },
      'Reset to clinic default',
    );
    const form = h('form', { id: formId, class: 'thr-form', novalidate: true, 'aria-label': `${label} thresholds` });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (form.getAttribute('aria-busy') === 'true') return;
      clearErrors();
      const lowV = parseLimit(low.control.value);
      const highV = parseLimit(high.control.value);
      let bad = false;
      for (const [side, v] of [
        ['high', highV],
        ['low', lowV],
      ] as const) {
        if (v === undefined) {
          fieldError(side, 'Enter a number, or leave it empty for no limit.');
          fields[side].control.focus();
          bad = true;
        }
      }
      if (bad) return;
      form.setAttribute('aria-busy', 'true');
      saveButton.disabled = true;
      try {
        await api<void>(`${base}/thresholds/${encodeURIComponent(metric)}`, { method: 'PUT', body: { low: lowV, high: highV } });
        await loadThresholds();
        redrawRow(metric, lowV === null && highV === null ? `${label}: back to the clinic default.` : `${label} thresholds saved.`);
      } catch (err) {
        showError(err);
      } finally {
        form.removeAttribute('aria-busy');
        saveButton.disabled = false;
      }
    });
    return h(
      'tr',
      { 'data-metric': metric },
      h('th', { scope: 'row' }, label, unit ? h('span', { class: 'muted small' }, ` (${unit})`) : null),
      h('td', null, low.wrap),
      h('td', null, high.wrap),
      h('td', { class: 'thr-source', 'data-source': t.source }, thresholdSourceLabel(t.source)),
      canEdit ? h('td', null, form, h('div', { class: 'row-actions' }, saveButton, resetButton), rowError) : null,
    );
  };

  const rows = new Map<string, HTMLElement>();
  const redrawRow = (metric: string, message: string) => {
    const old = rows.get(metric);
    const row = thresholdRow(metric);
    rows.set(metric, row);
    old?.replaceWith(row);
    status.textContent = message;
  };

  const drawThresholds = () => {
    const metrics = [...THRESHOLD_METRICS, ...[...thresholds.keys()].filter((m) => !THRESHOLD_METRICS.includes(m as never))];
    rows.clear();
    replaceChildren(
      thresholdsEl,
      h('h2', { id: 'thresholds-heading' }, 'Alert thresholds'),
      h(
        'p',
        { class: 'muted' },
        'An alert opens when a reading is below the low or above the high limit. Leave a box empty for no limit on that side; saving both empty returns to the clinic default. ',
        canEdit ? '' : 'Only the patient’s clinicians can change them.',
      ),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'thresholds' },
          h('caption', { class: 'visually-hidden' }, `Alert thresholds of ${name}`),
          h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Metric'), h('th', { scope: 'col' }, 'Low'), h('th', { scope: 'col' }, 'High'), h('th', { scope: 'col' }, 'In force'), canEdit ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')) : null)),
          h(
            'tbody',
            null,
            metrics.map((m) => {
              const row = thresholdRow(m);
              rows.set(m, row);
              return row;
            }),
          ),
        ),
      ),
    );
  };

  thresholdsLoaded = loadThresholds();
  const [, thr] = await Promise.allSettled([loadCharts(), thresholdsLoaded]);
  if (signal.aborted) return;
  if (thr.status === 'rejected') {
    if (isAbort(thr.reason)) return;
    replaceChildren(thresholdsEl, h('h2', { id: 'thresholds-heading' }, 'Alert thresholds'), loadError(thr.reason));
  } else {
    drawThresholds();
    for (const p of plots.values()) p.redraw(false, false);
  }

  // ---- NEWS2 SpO2 scale ----
  const drawScale = (scale: 1 | 2, message = '') => {
    const explain = h(
      'p',
      { class: 'muted' },
      'Scale 2 is for patients with hypercapnic respiratory failure whose prescribed SpO₂ target is 88–92 %; everyone else is on scale 1. ',
      canEdit ? 'Choose it only on a clinical decision: it changes how NEWS2 scores SpO₂.' : 'Only the patient’s clinicians can change it.',
    );
    if (!canEdit) {
      replaceChildren(scaleEl, h('h2', { id: 'scale-heading' }, 'NEWS2 SpO₂ scale'), explain, h('p', { 'data-scale': String(scale) }, `In force: scale ${scale}.`));
      return;
    }
    const option = (value: 1 | 2, label: string) =>
      h('label', { class: 'radio' }, h('input', { type: 'radio', name: 'spo2-scale', value: String(value), checked: scale === value ? true : undefined }), ` ${label}`);
    const feedback = h('p', { class: 'live', role: 'status', 'aria-live': 'polite' }, message);
    const form = h(
      'form',
      { class: 'scale-form', 'aria-label': 'NEWS2 SpO₂ scale', 'data-scale': String(scale) },
      h('fieldset', null, h('legend', null, 'SpO₂ scale'), option(1, 'Scale 1'), option(2, 'Scale 2 (hypercapnic respiratory failure)')),
      h('button', { type: 'submit', class: 'button small primary' }, 'Save scale'),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const chosen = (form.querySelector('input[name="spo2-scale"]:checked') as HTMLInputElement | null)?.value === '2' ? 2 : 1;
      try {
        await api<void>(`${base}/news2/settings`, { method: 'PUT', body: { spo2_scale: chosen } });
        drawScale(chosen, `NEWS2 now scores SpO₂ on scale ${chosen}.`);
      } catch (err) {
        replaceChildren(feedback, messageForError(err));
      }
    });
    replaceChildren(scaleEl, h('h2', { id: 'scale-heading' }, 'NEWS2 SpO₂ scale'), explain, form, feedback);
  };
  try {
    const settings = await api<News2Settings>(`${base}/news2/settings`, { signal });
    if (signal.aborted) return;
    drawScale(settings.spo2_scale);
  } catch (err) {
    if (isAbort(err)) return;
    replaceChildren(scaleEl, h('h2', { id: 'scale-heading' }, 'NEWS2 SpO₂ scale'), loadError(err));
  }
}
