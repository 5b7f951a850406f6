// Helpers shared by the end-to-end tests: ports, psql, the bedside binary,
// and polling with deadlines (no fixed sleeps).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** Default deadline of web-first waits. */
export const WAIT = 20_000;

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

export function psql(url, sql) {
  const r = spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-X', '-q', '-c', sql], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) throw new Error(`psql could not run (${r.error.message}); is the PostgreSQL client installed?`);
  if (r.status !== 0) throw new Error(`psql ${JSON.stringify(sql)} failed (exit ${r.status}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

export function dbUrl(serverUrl, name) {
  const u = new URL(serverUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

export function runWith(BIN, args, env, input) {
  const r = spawnSync(BIN, args, { env, input, encoding: 'utf8', timeout: 180_000 });
  if (r.error) throw new Error(`${BIN} ${args.join(' ')} could not run: ${r.error.message}`);
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

export async function expectUrl(page, pathname, timeout = WAIT) {
  await page.waitForURL((u) => new URL(u).pathname === pathname, { timeout });
}

/** A runner for the bedside binary at `bin`: (args, env, stdin) → spawnSync result, throwing on failure. */
export function bedsideRunner(bin) {
  return (args, env, input) => runWith(bin, args, env, input);
}

// eslint-disable-next-line no-control-regex
const plainText = (chunks) => chunks.join('').replace(/\x1b\[[0-9;]*m/g, '');

/**
 * Starts `bin serve` with `env`, its output collected into `logs`, and waits until
 * `${base}${path}` answers 200 (failing at once, with the output, if the server exits).
 * `/readyz` needs the database and, with ingest on, the broker; `/api/v1/clinic` only the
 * server itself.
 */
export async function serveUntilReady(bin, env, base, logs, path = '/readyz') {
  const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => {
      logs.push(d);
      if (logs.length > 5000) logs.splice(0, 1000);
    });
  }
  await poll(`GET ${path} to answer 200`, async () => {
    if (exited) throw new Fatal(`\`bedside serve\` exited before it was ready (${JSON.stringify(exited)})`);
    const res = await fetch(`${base}${path}`).catch(() => null);
    return res?.status === 200;
  }, 90_000, 250).catch((e) => {
    throw new Error(`${e.message}\n--- server output ---\n${plainText(logs).slice(-8000)}`);
  });
  return child;
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
  const child = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.exited = null;
  child.on('exit', (code, signal) => {
    child.exited = { code, signal };
  });
  for (const s of [child.stdout, child.stderr]) {
    s.setEncoding('utf8');
    s.on('data', (d) => logs.push(d));
  }
  return child;
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
