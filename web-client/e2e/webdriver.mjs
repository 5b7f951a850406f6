// A small W3C WebDriver client for the end-to-end tests, spoken over HTTP with `fetch` to a
// private geckodriver (Firefox). Only what the tests need: sessions, navigation, elements found
// by CSS or XPath, clicks, typing, scripts, user prompts and screenshots. Every command that the
// driver answers with an error throws, naming the command and the driver's error and message.
import { accessSync, constants, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Fatal, freePort, poll, spawnLogged } from './support.mjs';

/** The key under which WebDriver answers hold an element reference. */
const ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';

function executable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The geckodriver to run: `$GECKODRIVER`, else `geckodriver` on PATH, else the one
 * `cargo install geckodriver` leaves in `$CARGO_HOME/bin` (~/.cargo/bin). Throws, saying how to
 * install it, when there is none.
 */
export function findGeckodriver() {
  const named = process.env.GECKODRIVER;
  if (named) {
    if (!executable(named)) throw new Error(`GECKODRIVER=${named} is not an executable file.`);
    return named;
  }
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), join(process.env.CARGO_HOME || join(homedir(), '.cargo'), 'bin')];
  const found = dirs.map((d) => join(d, 'geckodriver')).find(executable);
  if (!found) throw new Error('geckodriver is not installed: run `cargo install geckodriver --locked` (it lands in ~/.cargo/bin), or point GECKODRIVER at it.');
  return found;
}

/**
 * Starts geckodriver on a free loopback port, its output (and Firefox's) collected into `logs`,
 * and waits until `/status` says it is ready. The child has `base` (its URL) and `exited`.
 */
export async function startGeckodriver(bin, logs) {
  const port = await freePort();
  const child = spawnLogged(bin, ['--host', '127.0.0.1', '--port', String(port)], {}, logs);
  child.base = `http://127.0.0.1:${port}`;
  await poll('geckodriver /status to say ready', async () => {
    if (child.exited) throw new Fatal(`geckodriver exited before it was ready (${JSON.stringify(child.exited)}): ${logs.join('').slice(-4000)}`);
    const res = await fetch(`${child.base}/status`).catch(() => null);
    return res?.ok && (await res.json()).value?.ready === true;
  }, 30_000, 100);
  return child;
}

/** One WebDriver session (one browser) behind the driver at `base`. */
export class WebDriverSession {
  constructor(base, id) {
    this.base = base;
    this.id = id;
  }

  /** Opens a session with these capabilities (`alwaysMatch`). Fails when the browser does not start. */
  static async create(base, capabilities) {
    const value = await command(base, 'POST', '/session', { capabilities: { alwaysMatch: capabilities } });
    return new WebDriverSession(base, value.sessionId);
  }

  cmd(method, path, body) {
    return command(this.base, method, `/session/${this.id}${path}`, body);
  }

  async navigate(url) {
    await this.cmd('POST', '/url', { url });
  }

  /** The first element matching `selector` (CSS by default, or `using: 'xpath'`), or null. */
  async find(selector, using = 'css selector') {
    const found = await this.cmd('POST', '/elements', { using, value: selector });
    return found.length ? found[0][ELEMENT] : null;
  }

  /** Waits until an element matches `selector` and returns it. */
  waitFor(selector, using = 'css selector', timeout) {
    return poll(`an element ${selector} in Firefox`, () => this.find(selector, using), timeout);
  }

  async click(element) {
    await this.cmd('POST', `/element/${element}/click`, {});
  }

  async type(element, text) {
    await this.cmd('POST', `/element/${element}/value`, { text });
  }

  /** Runs `script` (a function body; `arguments` are `args`) in the page and returns its value. */
  execute(script, args = []) {
    return this.cmd('POST', '/execute/sync', { script, args });
  }

  /** The text of the open user prompt (alert, confirm), or throws when none is open. */
  alertText() {
    return this.cmd('GET', '/alert/text');
  }

  async acceptAlert() {
    await this.cmd('POST', '/alert/accept', {});
  }

  async screenshot(path) {
    writeFileSync(path, Buffer.from(await this.cmd('GET', '/screenshot'), 'base64'));
  }

  /** Ends the session: the driver closes the browser. */
  async delete() {
    await this.cmd('DELETE', '');
  }
}

async function command(base, method, path, body) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json; charset=utf-8' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new Error(`WebDriver ${method} ${path} → ${res.status}: ${text.slice(0, 500)}`);
  }
  if (!res.ok || answer.value?.error) {
    throw new Error(`WebDriver ${method} ${path} → ${res.status} ${answer.value?.error}: ${answer.value?.message}`);
  }
  return answer.value;
}
