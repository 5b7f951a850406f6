// Helpers shared by the end-to-end tests: where things are, ports, psql, child processes (the
// bedside binary, Mosquitto), polling with deadlines (no fixed sleeps), and Chromium pages.
// The bedside server as a whole (database, users, API) is ./bedside-server.mjs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const webClient = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The built web client, served by the server (`npm run build`). */
export const DIST = join(webClient, 'dist');
/** Where the tests leave their screenshots and logs. */
export const RESULTS = join(webClient, 'test-results');
/** Debian's Chromium. */
const CHROMIUM = '/usr/bin/chromium';
/** The bedside binary: `$BEDSIDE_BIN`, else ../target/debug/bedside relative to web-client. */
export const BIN = process.env.BEDSIDE_BIN ? resolve(process.env.BEDSIDE_BIN) : resolve(webClient, '../target/debug/bedside');
/** The PostgreSQL server the tests create their databases on: `$BEDSIDE_TEST_PG_URL`. */
export const PG_URL = process.env.BEDSIDE_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/postgres';

/** Default deadline of web-first waits. */
export const WAIT = 20_000;

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => res(port));
    });
  });
}

/** Runs one SQL statement with psql on `url`; returns its output, throwing on failure. */
export function psql(url, sql) {
  const r = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-X', '-q', '-c', sql], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`psql could not run (${r.error.message}); is the PostgreSQL client installed?`);
  if (r.status !== 0) throw new Error(`psql ${JSON.stringify(sql)} failed (exit ${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The URL of the database `name` on the PostgreSQL server at `serverUrl`. */
export function dbUrl(serverUrl, name) {
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs the bedside binary `bin` with `args`, `env` and stdin `input`; throws, with its output, on failure. */
export function runWith(bin, args, env, input) {
  const r = spawnSync(bin, args, { env, input, encoding: 'utf8', timeout: 180_000 });
  if (r.error) throw new Error(`${bin} ${args.join(' ')} could not run: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`\`bedside ${args.join(' ')}\` failed (exit ${r.status}, signal ${r.signal})\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`);
  }
  return r;
}

/** Thrown inside a poll to stop waiting at once. */
export class Fatal extends Error {}

/** Polls `fn` until it returns a truthy value or the deadline passes. */
export async function poll(what, fn, timeout = WAIT, interval = 200) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      if (e instanceof Fatal) throw e;
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Web-first text assertion: waits until the locator's text matches. */
export async function expectText(locator, pattern, timeout = WAIT) {
  await locator.first().waitFor({ state: 'visible', timeout });
  return poll(`text ${pattern} in ${locator}`, async () => {
    const t = await locator.first().innerText();
    return (typeof pattern === 'string' ? t.includes(pattern) : pattern.test(t)) ? t : false;
  }, timeout);
}

/** Waits until the page's address has this pathname. */
export async function expectUrl(page, pathname, timeout = WAIT) {
  await page.waitForURL((u) => new URL(u).pathname === pathname, { timeout });
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/** Collected output chunks as one text, without terminal colours. */
export function plainText(chunks) {
  return chunks.join('').replace(ANSI, '');
}

/**
 * Spawns `cmd` with its stdout and stderr collected into `logs` (the oldest dropped past 5000
 * chunks). The child has `exited` once it ends or fails to start.
 */
export function spawnLogged(cmd, args, opts, logs) {
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
      logs.push(d);
      if (logs.length > 5000) logs.splice(0, 1000);
    });
  }
  return child;
}

/** Stops a child from spawnLogged, if still running: SIGTERM, then SIGKILL after 10 s. */
export async function stopChild(child) {
  if (child && child.exitCode === null && child.signalCode === null && !child.exited) {
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
}

/**
 * Waits until GET `url` answers 200, for up to `timeout` ms; fails at once if one of `procs`
 * ({ name, child, logs }, the child from spawnLogged) exits, and on failure shows their output.
 */
export async function waitFor200(url, procs, timeout) {
  await poll(`GET ${url} to answer 200`, async () => {
    for (const { name, child } of procs) {
      if (child.exited) throw new Fatal(`${name} exited before it was ready (${JSON.stringify(child.exited)})`);
    }
    const res = await fetch(url).catch(() => null);
    return res?.status === 200;
  }, timeout, 250).catch((e) => {
    throw new Error([e.message, ...procs.map(({ name, logs }) => `--- ${name} output ---\n${plainText(logs).slice(-8000)}`)].join('\n'));
  });
}

/** Fails, saying what to install, when `mosquitto` or `mosquitto_pub` is not on PATH. */
export function requireMosquitto() {
  for (const tool of ['mosquitto', 'mosquitto_pub']) {
    const r = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${tool} is not installed: run \`apt-get install -y mosquitto mosquitto-clients\` (as root) and try again.`);
  }
}

/**
 * A private Mosquitto on 127.0.0.1:`port` using the password and ACL files the server wrote
 * under `dataDir`/mosquitto; its output goes to `logs`. The child has `exited` once it ends.
 */
export function startMosquitto(dataDir, port, logs) {
  const passwd = join(dataDir, 'mosquitto', 'passwd');
  const acl = join(dataDir, 'mosquitto', 'acl');
  if (!existsSync(passwd) || !existsSync(acl)) throw new Error(`the server did not write ${passwd} and ${acl}`);
  const conf = join(dataDir, 'mosquitto.conf');
  writeFileSync(conf, `user root\nlistener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${passwd}\nacl_file ${acl}\npersistence false\npid_file ${join(dataDir, 'mosquitto.pid')}\n`);
  return spawnLogged('mosquitto', ['-c', conf], {}, logs);
}

/** Publishes SenML over MQTT as `device` (QoS 1: returns once the broker has it). */
export function publishSenml(port, device, senml) {
  const user = device.mqtt_username;
  const r = spawnSync(
    'mosquitto_pub',
    ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', device.mqtt_password, '-q', '1', '-t', `bedside/v1/devices/${user}/vitals`, '-m', JSON.stringify(senml)],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (r.error || r.status !== 0) throw new Error(`mosquitto_pub failed (exit ${r.status}): ${r.error?.message ?? ''}${r.stderr}`);
}

/**
 * Fails, saying what to run, when Chromium or the built web client (dist/index.html) is
 * missing; creates the results folder.
 */
export function requireChromiumAndBuild() {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM}: run \`apt-get install -y chromium\` (as root) and try again.`);
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST}/index.html is missing: run \`npm run build\` first (\`npm run e2e\` does it).`);
  mkdirSync(RESULTS, { recursive: true });
}

/**
 * Launches headless Chromium; with `fakeMedia`, a fake camera (a moving test pattern) and
 * microphone (a beep), allowed without asking.
 */
export function launchChromium({ fakeMedia = false } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(fakeMedia ? ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'] : []),
    ],
  });
}

/** A new page in `context` that adds CSP violations and uncaught errors to `problems`. */
export async function newPage(context, problems) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.on('console', (m) => {
    const t = m.text();
    if (/Content Security Policy|Refused to/i.test(t)) problems.push(`${page.url()}: ${t}`);
  });
  page.on('pageerror', (e) => problems.push(`${page.url()}: uncaught ${e.message}`));
  return page;
}

/** Signs `who` ({ email, password }) in on the server at `base` through its login page. */
export async function signIn(page, base, who) {
  await page.goto(`${base}/login`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}
