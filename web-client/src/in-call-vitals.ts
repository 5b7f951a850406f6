// The clinician's panel beside the video: the patient's latest vitals, NEWS2 and live alerts
// (acknowledged from here), fed by the call's own socket (the live feed of docs/signaling.md).
import { h, replaceChildren } from './dom';
import { alertTitle, applyAlert, formatReading, metricLabel, news2BandClass, news2BandLabel, severityLabel, sortAlerts } from './lib/vitals';
import type { Alert, CurrentValue } from './types';

export interface InCallVitals {
  root: HTMLElement;
  /** Feeds one live-feed message (snapshot, sample, news2, alert). */
  onFeed: (message: { type: string; [key: string]: unknown }) => void;
}

export function inCallVitals(patientId: string, acknowledge: (alertId: string) => void): InCallVitals {
  const latest = new Map<string, CurrentValue>();
  const alerts = new Map<string, Alert>();
  const values = h('dl', { class: 'in-call-values' });
  const news2 = h('p', { class: 'news2', 'data-testid': 'in-call-news2' }, 'NEWS2: no score yet');
  const alertList = h('ul', { class: 'in-call-alerts', 'aria-label': 'Alerts', 'data-testid': 'in-call-alerts' });
  const announce = h('div', { role: 'alert', class: 'visually-hidden' });
  const root = h(
    'section',
    { class: 'card in-call-vitals', 'aria-labelledby': 'in-call-vitals-heading', 'data-testid': 'in-call-vitals' },
    h('h2', { id: 'in-call-vitals-heading' }, 'Live vitals'),
    values,
    news2,
    h('h3', { class: 'small-heading' }, 'Alerts'),
    alertList,
    announce,
  );

  const drawValues = () => {
    const rows = [...latest.values()].sort((a, b) => a.metric.localeCompare(b.metric));
    replaceChildren(
      values,
      rows.length === 0
        ? h('p', { class: 'muted' }, 'No readings yet.')
        : rows.map((r) => h('div', { 'data-metric': r.metric }, h('dt', null, metricLabel(r.metric)), h('dd', { 'data-testid': `in-call-${r.metric}` }, formatReading(r.metric, r.value, r.unit)))),
    );
  };
  const drawAlerts = () => {
    const live = sortAlerts([...alerts.values()].filter((a) => a.status !== 'resolved'));
    replaceChildren(
      alertList,
      live.length === 0
        ? h('li', { class: 'muted' }, 'No live alerts.')
        : live.map((a) =>
            h(
              'li',
              { 'data-status': a.status, 'data-rule': a.rule, class: `severity-${a.severity}` },
              h('strong', null, severityLabel(a.severity)),
              ' ',
              alertTitle(a),
              a.status === 'open'
                ? h('button', { type: 'button', class: 'button small', onclick: () => acknowledge(a.id) }, 'Acknowledge')
                : h('span', { class: 'muted', 'data-testid': 'acknowledged' }, ' · acknowledged'),
            ),
          ),
    );
  };
  drawValues();
  drawAlerts();

  const onFeed = (m: { type: string; [key: string]: unknown }) => {
    if (m.type === 'snapshot') {
      const patients = m.patients as { patient_id: string; latest: CurrentValue[] }[];
      for (const p of patients) if (p.patient_id === patientId) for (const r of p.latest) latest.set(r.metric, r);
      for (const a of m.alerts as Alert[]) if (a.patient_id === patientId) alerts.set(a.id, a);
      drawValues();
      drawAlerts();
    } else if (m.type === 'sample' && m.patient_id === patientId) {
      latest.set(m.metric as string, { metric: m.metric as string, value: m.value as number, unit: m.unit as string, time: m.time as string });
      drawValues();
    } else if (m.type === 'news2' && m.patient_id === patientId) {
      news2.textContent = `NEWS2 ${String(m.total)} · ${news2BandLabel(m.band as string)}`;
      news2.className = `news2 ${news2BandClass(m.band as string)}`;
      news2.dataset.band = m.band as string;
    } else if (m.type === 'alert') {
      const alert = m.alert as Alert;
      if (alert.patient_id !== patientId) return;
      const isNew = !alerts.has(alert.id);
      applyAlert(alerts, alert);
      drawAlerts();
      if (isNew && alert.status === 'open') announce.textContent = `New alert (${alert.severity}): ${alertTitle(alert)}`;
    }
  };
  return { root, onFeed };
}
