// End-to-end across two browser engines: a video visit through the real bedside server
// (signaling and SFU) between a patient in Chromium (playwright-core) and a clinician in Firefox
// ESR (driven by geckodriver over the W3C WebDriver HTTP protocol, spoken with fetch in
// ./webdriver.mjs). The patient opens the join link, accepts the consent, checks their devices
// and waits; the clinician signs in, opens the visit, starts it and admits the patient; each side
// decodes the other's video (framesDecoded grows, the <video> plays) and receives audio with a
// non-zero level, read from the same page hooks as video-visit.test.mjs (the remote tile's data
// attributes, which the page fills from getStats on its RTCPeerConnection); the clinician ends
// the visit (accepting the confirm prompt), the patient is told, and the appointment is finished.
//
// What Firefox needs (firefoxCapabilities below):
//   -headless;
//   media.navigator.streams.fake: a fake camera (a colour-cycling frame) and microphone (a tone);
//   media.navigator.permission.disabled: no permission prompt;
//   camera and microphone permissions remembered for the server's origin, given through
//     permissions.manager.defaultsUrl (a data: URL in the format of Firefox's defaults/permissions):
//     fake devices do not count as capturing, and without a remembered permission Firefox gathers
//     only its default-route address, mDNS-obfuscated, for a page's RTCPeerConnection;
//   media.peerconnection.ice.loopback: the SFU listens on 127.0.0.1 here, and Firefox leaves
//     loopback out of ICE unless told (without it, or without the permission, ICE never starts);
//   unhandledPromptBehavior "ignore": the "End the visit for everyone?" confirm stays open until
//     the test accepts it.
//   getUserMedia needs a secure context: http://127.0.0.1 is one. The web client needed no change.
//
// Inputs (environment):
//   BEDSIDE_BIN          the bedside binary (default ../target/debug/bedside, relative to web-client)
//   BEDSIDE_TEST_PG_URL  a PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432/postgres);
//                        the test creates and drops a database e2e_firefox_<random> on it
//   GECKODRIVER          geckodriver (default: `geckodriver` on PATH, else ~/.cargo/bin/geckodriver;
//                        `cargo install geckodriver --locked`)
// Needs /usr/bin/chromium and /usr/bin/firefox-esr (Debian: apt-get install -y chromium firefox-esr);
// a missing browser or driver fails the test, it is not skipped.
// Output: test-results/firefox-visit-*.png, server-firefox-visit.log and geckodriver.log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BedsideServer, bookVideoVisitNow, createPatient } from './bedside-server.mjs';
import { RESULTS, WAIT, expectText, launchChromium, newPage, plainText, poll, requireChromiumAndBuild, stopChild } from './support.mjs';
import { WebDriverSession, findGeckodriver, startGeckodriver } from './webdriver.mjs';

const FIREFOX = '/usr/bin/firefox-esr';

/** The clinician's Firefox for a server at `origin` (the header says why each preference). */
function firefoxCapabilities(origin) {
  const granted = ['camera', 'microphone'].map((type) => `origin\t${type}\t1\t${origin}\n`).join('');
  return {
    browserName: 'firefox',
    unhandledPromptBehavior: 'ignore',
    'moz:firefoxOptions': {
      binary: FIREFOX,
      args: ['-headless'],
      prefs: {
        'media.navigator.streams.fake': true,
        'media.navigator.permission.disabled': true,
        'permissions.manager.defaultsUrl': `data:text/plain,${encodeURIComponent(granted)}`,
        'media.peerconnection.ice.loopback': true,
      },
    },
  };
}

const run = randomBytes(4).toString('hex');
const ADMIN = { role: 'admin', email: `admin-${run}@e2e.test`, name: 'E2E Admin', password: `e2e-Admin-pass-${run}-long` };
const CLINICIAN = { role: 'clinician', email: `clinician-${run}@e2e.test`, name: `Dr. Gecko ${run}`, password: `e2e-Clinician-pass-${run}-long` };
const PATIENT = { given: 'Lena', family: `Fuchs-${run}`, mrn: `E2E-F-${run.toUpperCase()}`, birth: '1958-03-02', sex: 'female' };

const server = new BedsideServer({
  db: `e2e_firefox_${run}`,
  users: [ADMIN, CLINICIAN],
  // This test is about the call between engines; the device gateway (and its broker) is not needed.
  broker: false,
  log: 'server-firefox-visit.log',
});
const state = { browser: null, geckodriver: null, geckoLogs: [], firefox: null, appointmentId: null, joinUrl: null, adminToken: null, problems: [] };

async function startServerAndBookVisit() {
  await server.start();
  // A video visit starting now, booked through the API.
  state.adminToken = await server.api.login(ADMIN);
  const patient = await createPatient(server.api, state.adminToken, PATIENT);
  const booked = await bookVideoVisitNow(server.api, state.adminToken, patient.id, CLINICIAN, 'E2E cross-browser follow-up');
  state.appointmentId = booked.id;
  state.joinUrl = booked.join_url;
}

async function stopAll() {
  await state.browser?.close().catch(() => {});
  // Deleting the session closes Firefox; then the driver can go.
  await state.firefox?.delete().catch((e) => console.error(`could not end the Firefox session: ${e.message}`));
  await stopChild(state.geckodriver);
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(join(RESULTS, 'geckodriver.log'), plainText(state.geckoLogs));
  await server.stop();
}

// ---------- the two sides' page hooks ----------

/** Reads the one remote tile of `role` in a page (runs in the browser, either engine). */
function readTile(role) {
  const tile = document.querySelector(`[data-testid="remote-tile"][data-role="${role}"]`);
  if (!tile) return null;
  const video = tile.querySelector('video');
  return {
    frames: Number(tile.dataset.framesDecoded ?? 0),
    level: Number(tile.dataset.maxAudioLevel ?? 0),
    playing: Boolean(video && !video.paused && video.videoWidth > 0),
  };
}

/** The visit phases shown on a page (runs in the browser, either engine). */
function readPhases() {
  return [...document.querySelectorAll('[data-testid="visit-phase"]')].map((e) => e.dataset.phase ?? '');
}

// WebDriver runs a function body: call the function with the script's arguments.
const inFirefox = (fn) => `return (${fn.toString()}).apply(null, arguments);`;

const chromiumSide = (page) => ({
  name: 'Chromium',
  tile: (role) => page.evaluate(readTile, role),
  phases: () => page.evaluate(readPhases),
});

const firefoxSide = (session) => ({
  name: 'Firefox',
  tile: (role) => session.execute(inFirefox(readTile), [role]),
  phases: () => session.execute(inFirefox(readPhases)),
});

async function phase(side, expected, timeout = WAIT) {
  return poll(`the visit phase in ${side.name} to be ${expected}`, async () => ((await side.phases()).includes(expected) ? true : false), timeout);
}

/**
 * Waits until `side` decodes more than `after` + 10 video frames from the one remote tile of
 * `role`, plays that video and has heard its audio; returns the frames decoded.
 */
async function receivesMedia(side, role, after = 0) {
  return poll(`${side.name} to decode ${role}'s video (framesDecoded > ${after + 10}), play it and hear audio`, async () => {
    const t = await side.tile(role);
    if (t && t.frames > after + 10 && t.level > 0 && t.playing) return t.frames;
    throw new Error(`the tile reads ${JSON.stringify(t)}`); // retried; the last one is reported
  }, 45_000, 500);
}

// ---------- the test ----------

describe('a video visit between Chromium and Firefox through the SFU', { timeout: 300_000 }, () => {
  before(async () => {
    requireChromiumAndBuild();
    if (!existsSync(FIREFOX)) throw new Error(`Firefox ESR is not installed at ${FIREFOX}: run \`apt-get install -y firefox-esr\` (as root) and try again.`);
    const geckodriver = findGeckodriver();
    await startServerAndBookVisit();
    state.browser = await launchChromium({ fakeMedia: true });
    state.geckodriver = await startGeckodriver(geckodriver, state.geckoLogs);
    state.firefox = await WebDriverSession.create(state.geckodriver.base, firefoxCapabilities(server.base)).catch((e) => {
      throw new Error(`Firefox did not start under geckodriver: ${e.message}\n--- geckodriver output ---\n${plainText(state.geckoLogs).slice(-4000)}`);
    });
  });

  after(stopAll);

  test('patient in Chromium, clinician in Firefox: admission, media both ways, end', async () => {
    // The patient (Chromium): consent, device check, waiting room.
    const patientContext = await state.browser.newContext({ viewport: { width: 1100, height: 900 } });
    await patientContext.grantPermissions(['camera', 'microphone'], { origin: server.base });
    const page = await newPage(patientContext, state.problems);
    const patient = chromiumSide(page);
    await page.goto(state.joinUrl);
    await page.getByRole('button', { name: 'I agree' }).click();
    await page.getByRole('button', { name: 'Check camera and microphone' }).click();
    await page.getByRole('button', { name: 'Join the waiting room' }).click();
    await phase(patient, 'waiting');

    // The clinician (Firefox): sign in, open the visit, start it.
    const ff = state.firefox;
    const clinician = firefoxSide(ff);
    await ff.navigate(`${server.base}/login`);
    await ff.type(await ff.waitFor('input[name="email"]'), CLINICIAN.email);
    await ff.type(await ff.waitFor('input[name="password"]'), CLINICIAN.password);
    await ff.click(await ff.waitFor('//form//button[normalize-space()="Sign in"]', 'xpath'));
    await ff.waitFor('//h1[normalize-space()="Dashboard"]', 'xpath');
    await ff.navigate(`${server.base}/visits/${state.appointmentId}`);
    // Uncaught errors and rejections on the visit page, read at the end.
    await ff.execute(`window.__e2eErrors = [];
      addEventListener('error', (e) => window.__e2eErrors.push(String(e.message)));
      addEventListener('unhandledrejection', (e) => window.__e2eErrors.push('unhandled rejection: ' + String(e.reason)));`);
    await ff.click(await ff.waitFor('[data-testid="start-visit"]'));
    await phase(clinician, 'in_call');

    // The clinician sees the patient waiting and admits them.
    const admit = await ff.waitFor(`//li[@data-testid="waiting-participant"][contains(., "${PATIENT.family}")]//button[normalize-space()="Admit"]`, 'xpath');
    await ff.click(admit);
    await phase(patient, 'in_call');

    // Media both ways, and still flowing a moment later.
    const patientSaw = await receivesMedia(patient, 'clinician');
    const clinicianSaw = await receivesMedia(clinician, 'patient');
    await receivesMedia(patient, 'clinician', patientSaw);
    await receivesMedia(clinician, 'patient', clinicianSaw);
    await page.screenshot({ path: join(RESULTS, 'firefox-visit-patient-chromium.png'), fullPage: true });
    await ff.screenshot(join(RESULTS, 'firefox-visit-clinician-firefox.png'));
    const shown = await ff.execute(`return [...document.querySelectorAll('[role="alert"]')].map((e) => e.textContent.trim()).filter(Boolean);`);
    assert.deepEqual(shown, [], 'no error shown on the clinician\'s page in Firefox');
    const status = await server.api.call('GET', `/appointments/${state.appointmentId}`, state.adminToken);
    assert.equal(status.status, 'in_progress', 'admission starts the visit');

    // The clinician ends the visit (confirming), the patient is told, the appointment is finished.
    await ff.click(await ff.waitFor('[data-testid="end-visit"]'));
    assert.match(await poll('the "End the visit" confirm in Firefox', () => ff.alertText()), /End the visit for everyone/);
    await ff.acceptAlert();
    await phase(clinician, 'ended');
    await phase(patient, 'ended');
    await expectText(page.getByTestId('visit-phase'), 'Your visit has ended');
    const finished = await server.api.call('GET', `/appointments/${state.appointmentId}`, state.adminToken);
    assert.equal(finished.status, 'finished');

    assert.deepEqual(await ff.execute('return window.__e2eErrors;'), [], 'no uncaught errors on the clinician\'s page in Firefox');
    await patientContext.close();
    assert.deepEqual(state.problems, [], 'no CSP violations or uncaught errors on the patient\'s page in Chromium');
  });
});
