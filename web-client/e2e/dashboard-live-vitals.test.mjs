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
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { Fatal, WAIT, bedsideRunner, dbUrl, expectText, expectUrl, freePort, poll, psql, publishSenml, startMosquitto } from './support.mjs';

const webClient = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(webClient, 'dist');
const results = join(webClient, 'test-results');
const CHROMIUM = '/usr/bin/chromium';
const BIN = process.env.BEDSIDE_BIN ? resolve(process.env.BEDSIDE_BIN) : resolve(webClient, '../target/debug/bedside');
const PG_URL = process.env.BEDSIDE_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

const run = randomBytes(4).toString('hex');
const ADMIN = { email: `admin-${run}@e2e.test`, name: 'E2E Admin', password: `e2e-Admin-pass-${run}-long` };
const CLINICIAN = { email: `clinician-${run}@e2e.test`, name: `Dr. Vita Live ${run}`, password: `e2e-Clinician-pass-${run}-long` };
const PATIENT = { given: 'Noor', family: `Haddad-${run}`, mrn: `E2E-D-${run.toUpperCase()}`, birth: '1951-03-09' };
const PATIENT_NAME = `${PATIENT.given} ${PATIENT.family}`;

// ---------- helpers ----------

const runBedside = bedsideRunner(BIN);

// ---------- fixture ----------

const state = {
  server: null,
  broker: null,
  logs: [],
  brokerLogs: [],
  db: null,
  dataDir: null,
  base: null,
  mqttPort: null,
  browser: null,
  adminToken: null,
  clinicianUserId: null,
  patientId: null,
  device: null,
  consoleProblems: [],
};

// eslint-disable-next-line no-control-regex
const plain = (chunks) => chunks.join('').replace(/\x1b\[[0-9;]*m/g, '');

function serverLog() {
  return plain(state.logs).slice(-8000);
}

function spawnLogged(cmd, args, opts, sink) {
  const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  child.exited = null;
  child.on('exit', (code, signal) => {
    child.exited = { code, signal };
  });
  child.on('error', (e) => {
    child.exited = { error: e.message };
  });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => {
      sink.push(d);
      if (sink.length > 5000) sink.splice(0, 1000);
    });
  }
  return child;
}

async function apiCall(method, path, token, body) {
  const res = await fetch(`${state.base}/api/v1${path}`, {
    method,
    headers: { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // not JSON
  }
  if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
  return json;
}

async function login(who) {
  const t = await apiCall('POST', '/auth/login', null, { email: who.email, password: who.password });
  assert.equal(typeof t?.access_token, 'string', `login of ${who.email} gave ${JSON.stringify(t)}`);
  return t.access_token;
}

async function startServerAndBroker() {
  if (!existsSync(BIN)) {
    throw new Error(`The bedside binary is missing at ${BIN}. Build the server first (cargo build), or point BEDSIDE_BIN at it.`);
  }
  for (const tool of ['mosquitto', 'mosquitto_pub']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${tool} is not installed: run \`apt-get install -y mosquitto mosquitto-clients\` (as root) and try again.`);
  }
  // (a) free ports
  const port = await freePort();
  const metricsPort = await freePort();
  state.mqttPort = await freePort();
  state.base = `http://127.0.0.1:${port}`;
  state.dataDir = mkdtempSync(join(tmpdir(), 'bedside-e2e-dash-'));
  state.db = `e2e_dash_${run}`;
  psql(PG_URL, `CREATE DATABASE "${state.db}"`);
  // (b) the server knows the broker; the broker files land in the data directory
  const env = {
    ...process.env,
    BEDSIDE_DATABASE__URL: dbUrl(PG_URL, state.db),
    BEDSIDE_HTTP__ADDR: `127.0.0.1:${port}`,
    BEDSIDE_METRICS__ADDR: `127.0.0.1:${metricsPort}`,
    BEDSIDE_VISITS__MEDIA_UDP: '127.0.0.1:0',
    BEDSIDE_HTTP__WEB_ROOT: dist,
    BEDSIDE_DATA_DIR: state.dataDir,
    BEDSIDE_PUBLIC_BASE_URL: state.base,
    BEDSIDE_MQTT__URL: `mqtt://127.0.0.1:${state.mqttPort}`,
    BEDSIDE_MQTT__PASSWORD: `gw-${randomBytes(16).toString('hex')}`,
    BEDSIDE_MQTT__BROKER_PID_FILE: join(state.dataDir, 'mosquitto.pid'),
    BEDSIDE_INGEST__BATCH_AGE_MS: '20',
  };
  runBedside(['migrate'], env);
  runBedside(['users', 'create', '--role', 'admin', '--email', ADMIN.email, '--name', ADMIN.name], env, `${ADMIN.password}\n`);
  runBedside(['users', 'create', '--role', 'clinician', '--email', CLINICIAN.email, '--name', CLINICIAN.name], env, `${CLINICIAN.password}\n`);

  // (c) the server; not ready (/readyz) until the gateway reaches the broker, but it answers
  const server = spawnLogged(BIN, ['serve'], { env }, state.logs);
  state.server = server;
  await poll('the server to answer GET /api/v1/clinic', async () => {
    if (server.exited) throw new Fatal(`\`bedside serve\` exited early (${JSON.stringify(server.exited)})`);
    const res = await fetch(`${state.base}/api/v1/clinic`).catch(() => null);
    return res?.status === 200;
  }, 90_000, 250).catch((e) => {
    throw new Error(`${e.message}\n--- server output ---\n${serverLog()}`);
  });

  // (d) patient, care relationship and device through the API (the server writes the broker files)
  state.adminToken = await login(ADMIN);
  const clinicianToken = await login(CLINICIAN);
  const me = await apiCall('GET', '/me', clinicianToken);
  assert.ok(me.practitioner_id, `the clinician has a practitioner id: ${JSON.stringify(me)}`);
  state.clinicianUserId = me.id;
  const patient = await apiCall('POST', '/patients', state.adminToken, {
    mrn: PATIENT.mrn,
    given_name: PATIENT.given,
    family_name: PATIENT.family,
    birth_date: PATIENT.birth,
    sex: 'female',
  });
  state.patientId = patient.id;
  await apiCall('POST', `/patients/${patient.id}/care-team`, state.adminToken, { practitioner_id: me.practitioner_id });
  const device = await apiCall('POST', '/devices', state.adminToken, { serial: `OX-${run}`, kind: 'pulse_oximeter', patient_id: patient.id });
  assert.ok(device.mqtt_username && device.mqtt_password, `POST /devices gave ${JSON.stringify(device)}`);
  state.device = device;
  // (e) Mosquitto on the server's files
  const broker = startMosquitto(state.dataDir, state.mqttPort, state.brokerLogs);
  state.broker = broker;

  // (f) ready: database, migrations and the gateway's broker connection (it retries with backoff)
  await poll('GET /readyz to answer 200', async () => {
    if (server.exited) throw new Fatal(`\`bedside serve\` exited (${JSON.stringify(server.exited)})`);
    if (broker.exited) throw new Fatal(`mosquitto exited (${JSON.stringify(broker.exited)}): ${plain(state.brokerLogs)}`);
    const res = await fetch(`${state.base}/readyz`).catch(() => null);
    return res?.status === 200;
  }, 60_000, 250).catch((e) => {
    throw new Error(`${e.message}\n--- server output ---\n${serverLog()}\n--- mosquitto ---\n${plain(state.brokerLogs)}`);
  });
}

async function stopChild(child) {
  if (child && child.exitCode === null && child.signalCode === null && !child.exited) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
}

async function stopAll() {
  await stopChild(state.server);
  await stopChild(state.broker);
  mkdirSync(results, { recursive: true });
  writeFileSync(join(results, 'server-dashboard.log'), plain(state.logs));
  writeFileSync(join(results, 'mosquitto.log'), plain(state.brokerLogs));
  if (state.db) {
    try {
      psql(PG_URL, `DROP DATABASE IF EXISTS "${state.db}" WITH (FORCE)`);
    } catch (e) {
      console.error(`could not drop ${state.db}: ${e.message}`);
    }
  }
  if (state.dataDir) rmSync(state.dataDir, { recursive: true, force: true });
}

function publish(senml) {
  publishSenml(state.mqttPort, state.device, senml);
}

async function newPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to/i.test(t)) state.consoleProblems.push(`${page.url()}: ${t}`);
  });
  page.on('pageerror', (e) => state.consoleProblems.push(`${page.url()}: uncaught ${e.message}`));
  return page;
}

async function signIn(page, who) {
  await page.goto(`${state.base}/login`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

// ---------- the test ----------

describe('live vitals dashboard over a real broker', { timeout: 300_000 }, () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (as root) and try again.`);
    }
    if (!existsSync(join(dist, 'index.html'))) {
      throw new Error(`${dist}/index.html is missing: run \`npm run build\` first (\`npm run e2e\` does it).`);
    }
    mkdirSync(results, { recursive: true });
    await startServerAndBroker();
    state.browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await stopAll();
  });

  test('a device reading and its alert reach the dashboard live; the clinician acknowledges it', async () => {
    const context = await state.browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await newPage(context);

    // (g) The clinician signs in and lands on the dashboard; the feed connects.
    await signIn(page, CLINICIAN);
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
    const live = await apiCall('GET', `/patients/${state.patientId}/alerts`, state.adminToken);
    const spo2Alert = live.find((a) => a.rule === 'threshold:spo2');
    assert.equal(spo2Alert?.status, 'acknowledged', `GET alerts: ${JSON.stringify(live)}`);
    assert.equal(spo2Alert.acknowledged_by, state.clinicianUserId);
    assert.equal(await page.evaluate(() => window.__e2eSamePage), 'yes', 'the page was not reloaded');
    await page.screenshot({ path: join(results, 'dashboard.png'), fullPage: true });

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
    const thresholds = await apiCall('GET', `/patients/${state.patientId}/thresholds`, state.adminToken);
    assert.deepEqual(
      thresholds.find((t) => t.metric === 'heart_rate'),
      { metric: 'heart_rate', unit: '/min', low: 45, high: 120, source: 'patient' },
    );
    await page.screenshot({ path: join(results, 'chart.png'), fullPage: true });
    await row.getByRole('button', { name: 'Reset Heart rate to the clinic default' }).click();
    await expectText(row.locator('.thr-source'), 'Clinic default');
    assert.equal(await page.getByLabel('Heart rate high limit').inputValue(), '130');

    await context.close();
    assert.deepEqual(state.consoleProblems, [], 'no CSP violations or uncaught errors in the page');
  });
});
