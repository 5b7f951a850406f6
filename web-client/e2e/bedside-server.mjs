// The bedside server as an end-to-end test runs it: a fresh database and data directory, free
// ports, the test's users, `bedside serve` with the built web client, optionally the device
// gateway on a private Mosquitto, and a JSON client of its API. Each test file has its own
// server, so the files do not share any state.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, DIST, PG_URL, RESULTS, dbUrl, freePort, plainText, psql, requireMosquitto, runWith, spawnLogged, startMosquitto, stopChild, waitFor200 } from './support.mjs';

/**
 * A JSON client of the API at `base`/api/v1. `call(method, path, token, body)` sends `body` as
 * JSON, with `token` (if any) as the bearer, and returns the parsed answer (null when empty),
 * throwing on a status other than 2xx; `login(who)` returns an access token for
 * { email, password }.
 */
function apiClient(base) {
  async function call(method, path, token, body) {
    const res = await fetch(`${base}/api/v1${path}`, {
      method,
      headers: { Accept: 'application/json', ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${text}`);
    return text ? JSON.parse(text) : null;
  }

  async function login(who) {
    const t = await call('POST', '/auth/login', null, { email: who.email, password: who.password });
    assert.equal(typeof t?.access_token, 'string', `login of ${who.email} gave ${JSON.stringify(t)}`);
    return t.access_token;
  }

  return { call, login };
}

/** One bedside server for one test file; `start` in `before`, `stop` in `after`. */
export class BedsideServer {
  /**
   * `db`: the name of the database it creates on PG_URL (and drops again); `users`: created with
   * `bedside users create` ({ role, email, name, password }); `broker`: the device gateway is on
   * and talks to a private Mosquitto (see startBroker), else ingest is off; `log` and
   * `brokerLog`: the files in RESULTS that the server's and the broker's output go to.
   */
  constructor({ db, users, broker = false, log, brokerLog = null }) {
    this.options = { db, users, broker, log, brokerLog };
    this.logs = [];
    this.brokerLogs = [];
    this.db = null;
    this.dataDir = null;
    this.child = null;
    this.broker = null;
    /** The server's URL, e.g. http://127.0.0.1:40123. */
    this.base = null;
    /** apiClient(base). */
    this.api = null;
    this.metricsPort = null;
    this.mqttPort = null;
  }

  /**
   * Creates the database and a data directory, runs `migrate`, creates the users and starts
   * `bedside serve`; returns once it answers. That is `/readyz` (database and migrations)
   * without a broker; with one, only `/api/v1/clinic`, since /readyz also waits for the
   * gateway's broker connection (startBroker). Fails, with the server's output, if it exits.
   */
  async start() {
    const { db, users, broker } = this.options;
    if (!existsSync(BIN)) throw new Error(`The bedside binary is missing at ${BIN}. Build the server first (cargo build), or point BEDSIDE_BIN at it.`);
    if (broker) requireMosquitto();
    const port = await freePort();
    this.metricsPort = await freePort();
    if (broker) this.mqttPort = await freePort();
    this.base = `http://127.0.0.1:${port}`;
    this.api = apiClient(this.base);
    this.dataDir = mkdtempSync(join(tmpdir(), `bedside-${db}-`));
    this.db = db;
    psql(PG_URL, `CREATE DATABASE "${db}"`);
    const env = {
      ...process.env,
      BEDSIDE_DATABASE__URL: dbUrl(PG_URL, db),
      BEDSIDE_HTTP__ADDR: `127.0.0.1:${port}`,
      BEDSIDE_METRICS__ADDR: `127.0.0.1:${this.metricsPort}`,
      // The SFU's one UDP socket; the browsers reach it on loopback.
      BEDSIDE_VISITS__MEDIA_UDP: '127.0.0.1:0',
      BEDSIDE_HTTP__WEB_ROOT: DIST,
      BEDSIDE_DATA_DIR: this.dataDir,
      BEDSIDE_PUBLIC_BASE_URL: this.base,
      ...(broker
        ? {
            // The server writes the broker's password and ACL files into its data directory.
            BEDSIDE_MQTT__URL: `mqtt://127.0.0.1:${this.mqttPort}`,
            BEDSIDE_MQTT__PASSWORD: `gw-${randomBytes(16).toString('hex')}`,
            BEDSIDE_MQTT__BROKER_PID_FILE: join(this.dataDir, 'mosquitto.pid'),
            BEDSIDE_INGEST__BATCH_AGE_MS: '20',
          }
        : { BEDSIDE_INGEST__ENABLED: 'false' }),
    };
    runWith(BIN, ['migrate'], env);
    for (const u of users) runWith(BIN, ['users', 'create', '--role', u.role, '--email', u.email, '--name', u.name], env, `${u.password}\n`);
    this.child = spawnLogged(BIN, ['serve'], { env }, this.logs);
    await waitFor200(`${this.base}${broker ? '/api/v1/clinic' : '/readyz'}`, [this.#serverProc()], 90_000);
  }

  /**
   * Starts Mosquitto on the password and ACL files the server wrote (it writes them once a device
   * is registered) and waits until /readyz answers: the gateway has reached the broker. Fails at
   * once, with both outputs, if the server or the broker exits.
   */
  async startBroker() {
    this.broker = startMosquitto(this.dataDir, this.mqttPort, this.brokerLogs);
    await waitFor200(`${this.base}/readyz`, [this.#serverProc(), { name: 'mosquitto', child: this.broker, logs: this.brokerLogs }], 60_000);
  }

  /**
   * Stops the server and the broker, writes their output to RESULTS, drops the database and
   * removes the data directory; does what applies after a start that failed part way.
   */
  async stop() {
    const { log, brokerLog } = this.options;
    await stopChild(this.child);
    await stopChild(this.broker);
    mkdirSync(RESULTS, { recursive: true });
    writeFileSync(join(RESULTS, log), plainText(this.logs));
    if (brokerLog) writeFileSync(join(RESULTS, brokerLog), plainText(this.brokerLogs));
    if (this.db) {
      try {
        psql(PG_URL, `DROP DATABASE IF EXISTS "${this.db}" WITH (FORCE)`);
      } catch (e) {
        console.error(`could not drop ${this.db}: ${e.message}`);
      }
    }
    if (this.dataDir) rmSync(this.dataDir, { recursive: true, force: true });
  }

  #serverProc() {
    return { name: '`bedside serve`', child: this.child, logs: this.logs };
  }
}

/** Adds `patient` ({ mrn, given, family, birth, sex }) through `api` as `token`; returns the record. */
export function createPatient(api, token, patient) {
  return api.call('POST', '/patients', token, { mrn: patient.mrn, given_name: patient.given, family_name: patient.family, birth_date: patient.birth, sex: patient.sex });
}

/**
 * Books through `api`, as `adminToken`, a 30-minute video visit of `patientId` with the
 * clinician `clinician` ({ email, password }) that began a minute ago by the server's clock;
 * returns the appointment, having checked that it has a join link.
 */
export async function bookVideoVisitNow(api, adminToken, patientId, clinician, reason) {
  const me = await api.call('GET', '/me', await api.login(clinician));
  const clinic = await api.call('GET', '/clinic', null);
  const booked = await api.call('POST', '/appointments', adminToken, {
    patient_id: patientId,
    practitioner_id: me.practitioner_id,
    start: new Date(Date.parse(clinic.now) - 60_000).toISOString(),
    duration_minutes: 30,
    kind: 'video',
    reason,
  });
  assert.match(booked.join_url ?? '', /\/join#t=/, `the booking answered ${JSON.stringify(booked)}`);
  return booked;
}
