// End-to-end: the real bedside server, a real Mosquitto and Debian's Chromium.
// A clinician watches the live vitals dashboard while a pulse oximeter publishes over MQTT:
// the heart rate shows up on the patient's tile, an SpO₂ of 85 % raises an alert that appears
// without a reload, and acknowledging it shows who acknowledged it. Then the chart page draws
// the history and the threshold editor refuses a bad limit next to its field.
//
// Inputs (environment):
//   BEDSIDE_BIN          the bedside binary (default ../target/debug/bedside, relative to web-client)
//   BEDSIDE_TEST_PG_URL  a PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432/postgres);
//                        the test creates and drops a database e2e_dash_<random> on it
// Needs `mosquitto` and `mosquitto_pub` on PATH (Debian: apt-get install -y mosquitto mosquitto-clients).
// Output: test-results/dashboard.png (and chart.png, server-dashboard.log, mosquitto.log).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BedsideServer, createPatient } from './bedside-server.mjs';
import { RESULTS, expectText, expectUrl, launchChromium, newPage, poll, publishSenml, requireChromiumAndBuild, signIn } from './support.mjs';

const run = randomBytes(4).toString('hex');
const ADMIN = { role: 'admin', email: `admin-${run}@e2e.test`, name: 'E2E Admin', password: `e2e-Admin-pass-${run}-long` };
const CLINICIAN = { role: 'clinician', email: `clinician-${run}@e2e.test`, name: `Dr. Vita Live ${run}`, password: `e2e-Clinician-pass-${run}-long` };
const PATIENT = { given: 'Noor', family: `Haddad-${run}`, mrn: `E2E-D-${run.toUpperCase()}`, birth: '1951-03-09', sex: 'female' };
const PATIENT_NAME = `${PATIENT.given} ${PATIENT.family}`;

// ---------- fixture ----------

const server = new BedsideServer({
  db: `e2e_dash_${run}`,
  users: [ADMIN, CLINICIAN],
  broker: true,
  log: 'server-dashboard.log',
  brokerLog: 'mosquitto.log',
});
const state = {
  browser: null,
  adminToken: null,
  clinicianUserId: null,
  patientId: null,
  device: null,
  consoleProblems: [],
};

async function startServerAndBroker() {
  // (a)–(c) free ports, a fresh database and data directory, the admin and the clinician, and
  // the server, which knows the broker and writes its files into the data directory; not ready
  // (/readyz) until the gateway reaches the broker, but it answers
  await server.start();
  const api = server.api;

  // (d) patient, care relationship and device through the API (the server writes the broker files)
  state.adminToken = await api.login(ADMIN);
  const clinicianToken = await api.login(CLINICIAN);
  const me = await api.call('GET', '/me', clinicianToken);
  assert.ok(me.practitioner_id, `the clinician has a practitioner id: ${JSON.stringify(me)}`);
  state.clinicianUserId = me.id;
  const patient = await createPatient(api, state.adminToken, PATIENT);
  state.patientId = patient.id;
  await api.call('POST', `/patients/${patient.id}/care-team`, state.adminToken, { practitioner_id: me.practitioner_id });
  const device = await api.call('POST', '/devices', state.adminToken, { serial: `OX-${run}`, kind: 'pulse_oximeter', patient_id: patient.id });
  assert.ok(device.mqtt_username && device.mqtt_password, `POST /devices gave ${JSON.stringify(device)}`);
  state.device = device;

  // (e) Mosquitto on the server's files; (f) ready: database, migrations and the gateway's
  // broker connection (it retries with backoff)
  await server.startBroker();
}

function publish(senml) {
  publishSenml(server.mqttPort, state.device, senml);
}

// ---------- the test ----------

describe('live vitals dashboard over a real broker', { timeout: 300_000 }, () => {
  before(async () => {
    requireChromiumAndBuild();
    await startServerAndBroker();
    state.browser = await launchChromium();
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await server.stop();
  });

  test('a device reading and its alert reach the dashboard live; the clinician acknowledges it', async () => {
    const context = await state.browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await newPage(context, state.consoleProblems);

    // (g) The clinician signs in and lands on the dashboard; the feed connects.
    await signIn(page, server.base, CLINICIAN);
    await expectUrl(page, '/dashboard');
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    const nav = page.getByRole('navigation', { name: 'Main' });
    await nav.getByRole('link', { name: 'Dashboard' }).waitFor();
    await nav.getByRole('link', { name: 'Today' }).waitFor();
    const tile = page.getByRole('article', { name: PATIENT_NAME });
    await tile.waitFor();
    await expectText(page.getByTestId('feed-state'), 'Live feed: connected');
    await expectText(tile.locator('[data-metric="heart_rate"]'), 'no reading');
    const alerts = page.getByRole('region', { name: 'Alerts' });
    await expectText(alerts, 'No live alerts.');
    // Anything below must arrive without a page load: this marker would not survive one.
    await page.evaluate(() => {
      window.__e2eSamePage = 'yes';
    });

    // (h) Heart rate 72 over MQTT → the tile shows it; the oximeter, heard
    // from for the first time with its battery level, shows online.
    publish([{ n: 'heart_rate', u: '/min', v: 72 }, { n: 'battery', u: '%EL', v: 64 }]);
    await expectText(tile.getByTestId('value-heart_rate'), /^72$/);
    await expectText(tile.getByTestId('device'), /Pulse oximeter · online · seen (just now|\d+ s ago) · battery 64 %/);
    await expectText(tile.locator('[data-metric="heart_rate"]'), '/min');
    await expectText(tile.locator('[data-metric="heart_rate"] time'), /just now|s ago/);

    // SpO₂ 85 % → an SpO₂ alert appears in the page, announced in a role="alert" region.
    publish([{ n: 'spo2', u: '%', v: 85 }]);
    await expectText(tile.getByTestId('value-spo2'), /^85$/);
    const item = alerts.getByRole('listitem').filter({ hasText: 'SpO₂' });
    await item.waitFor();
    await expectText(item, PATIENT_NAME);
    await expectText(item, 'SpO₂ 85 % (below 90 %)');
    assert.equal(await item.getAttribute('data-status'), 'open');
    await expectText(page.getByRole('alert').filter({ hasText: 'New alert' }), /New alert \(high\): .*SpO₂ 85 %/);
    await expectText(tile.locator('.tile-alert-list'), 'SpO₂ 85 %');
    // NEWS2 is fetched again after the samples: SpO₂ 85 scores 3 (a single red parameter).
    await poll('NEWS2 3 on the tile', async () => (await tile.getByTestId('news2').getAttribute('data-band')) === 'low_medium' && /NEWS2\s+3\b/.test(await tile.getByTestId('news2').innerText()));
    assert.equal(await page.evaluate(() => window.__e2eSamePage), 'yes', 'the page was not reloaded');

    // Acknowledge → the alert shows as acknowledged, by whom and when.
    await item.getByRole('button', { name: /^Acknowledge/ }).click();
    await expectText(item.getByTestId('acknowledged'), /Acknowledged by you at \d{1,2}:\d{2}/);
    assert.equal(await item.getByRole('button', { name: /^Acknowledge/ }).count(), 0, 'no Acknowledge button once acknowledged');
    assert.equal(await item.getAttribute('data-status'), 'acknowledged');
    const live = await server.api.call('GET', `/patients/${state.patientId}/alerts`, state.adminToken);
    const spo2Alert = live.find((a) => a.rule === 'threshold:spo2');
    assert.equal(spo2Alert?.status, 'acknowledged', `GET alerts: ${JSON.stringify(live)}`);
    assert.equal(spo2Alert.acknowledged_by, state.clinicianUserId);
    assert.equal(await page.evaluate(() => window.__e2eSamePage), 'yes', 'the page was not reloaded');
    await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true });

    // The chart page: history drawn by uPlot, and the threshold editor.
    await tile.getByRole('link', { name: /^Chart and thresholds/ }).click();
    await expectUrl(page, `/patients/${state.patientId}/chart`);
    await page.getByRole('heading', { level: 1, name: `${PATIENT_NAME}: vitals` }).waitFor();
    const hrChart = page.locator('section.chart-card[data-metric="heart_rate"]');
    await hrChart.locator('.uplot canvas').waitFor();
    await expectText(hrChart.locator('.chart-summary'), '1 reading in the last 24 hours');
    await page.getByRole('button', { name: 'Last 1 hour' }).click();
    await poll('the 1h view', async () => (await page.getByRole('button', { name: 'Last 1 hour' }).getAttribute('aria-pressed')) === 'true' && new URL(page.url()).searchParams.get('view') === '1h');
    await expectText(hrChart.locator('.chart-summary'), 'in the last 1 hour');

    const row = page.getByRole('row').filter({ has: page.getByRole('rowheader', { name: /^Heart rate/ }) });
    await page.getByLabel('Heart rate low limit').fill('150');
    await page.getByLabel('Heart rate high limit').fill('100');
    await row.getByRole('button', { name: 'Save Heart rate thresholds' }).click();
    await expectText(row.locator('.field-error').first(), 'Must be below high');
    assert.equal(await page.getByLabel('Heart rate low limit').getAttribute('aria-invalid'), 'true');
    await page.getByLabel('Heart rate low limit').fill('45');
    await page.getByLabel('Heart rate high limit').fill('120');
    await row.getByRole('button', { name: 'Save Heart rate thresholds' }).click();
    await expectText(page.getByRole('status').filter({ hasText: 'saved' }), 'Heart rate thresholds saved.');
    await expectText(row.locator('.thr-source'), 'Set for this patient');
    const thresholds = await server.api.call('GET', `/patients/${state.patientId}/thresholds`, state.adminToken);
    assert.deepEqual(
      thresholds.find((t) => t.metric === 'heart_rate'),
      { metric: 'heart_rate', unit: '/min', low: 45, high: 120, source: 'patient' },
    );
    await page.screenshot({ path: join(RESULTS, 'chart.png'), fullPage: true });
    await row.getByRole('button', { name: 'Reset Heart rate to the clinic default' }).click();
    await expectText(row.locator('.thr-source'), 'Clinic default');
    assert.equal(await page.getByLabel('Heart rate high limit').inputValue(), '130');

    await context.close();
    assert.deepEqual(state.consoleProblems, [], 'no CSP violations or uncaught errors in the page');
  });
});
