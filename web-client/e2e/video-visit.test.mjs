// End-to-end: a video visit through the real bedside server (signaling and SFU) between two
// Chromium browser contexts with fake cameras and microphones. The patient opens the join link,
// accepts the consent, checks their devices (a camera and microphone to choose, the level meter
// moving, the network check's verdict) and waits; the clinician admits them; each side decodes the
// other's video (framesDecoded grows) and receives audio with a non-zero level; the server's
// connection statistics show on the clinician's tile of the patient and as the patient's own; with
// the clinician muted the patient is the dominant speaker on both pages; the patient's audio-only
// mode stops the clinician's video reaching them and brings it back; the patient reloads the page and is back in the call without being admitted again, and after their network drops and comes back too; readings that the
// patient's oximeter publishes over a real Mosquitto appear in the clinician's in-call panel and an
// alarming one raises an alert there, acknowledged from the call; the clinician invites an
// interpreter through a single-use guest link and all three see and hear each other; the clinician
// ends the visit, the patient is told, and the appointment is finished.
//
// Inputs (environment):
//   BEDSIDE_BIN          the bedside binary (default ../target/debug/bedside, relative to web-client)
//   BEDSIDE_TEST_PG_URL  a PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432/postgres);
//                        the test creates and drops a database e2e_visit_<random> on it
// Needs `mosquitto` and `mosquitto_pub` on PATH (Debian: apt-get install -y mosquitto mosquitto-clients).
// Output: test-results/visit-*.png and server-visit.log.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { BedsideServer, bookVideoVisitNow, createPatient } from './bedside-server.mjs';
import { RESULTS, WAIT, expectText, launchChromium, newPage, poll, publishSenml, requireChromiumAndBuild, signIn } from './support.mjs';

const run = randomBytes(4).toString('hex');
const ADMIN = { role: 'admin', email: `admin-${run}@e2e.test`, name: 'E2E Admin', password: `e2e-Admin-pass-${run}-long` };
const CLINICIAN = { role: 'clinician', email: `clinician-${run}@e2e.test`, name: `Dr. Ada Call ${run}`, password: `e2e-Clinician-pass-${run}-long` };
const PATIENT = { given: 'Ravi', family: `Okafor-${run}`, mrn: `E2E-V-${run.toUpperCase()}`, birth: '1960-07-14', sex: 'male' };

const server = new BedsideServer({
  db: `e2e_visit_${run}`,
  users: [ADMIN, CLINICIAN],
  // The device gateway on a private broker: readings reach the clinician's in-call panel.
  broker: true,
  log: 'server-visit.log',
});
const state = { device: null, browser: null, appointmentId: null, joinUrl: null, adminToken: null, problems: [] };

async function startServerAndBookVisit() {
  await server.start();
  // A video visit starting now, booked through the API, for a patient with an oximeter.
  state.adminToken = await server.api.login(ADMIN);
  const patient = await createPatient(server.api, state.adminToken, PATIENT);
  state.device = await server.api.call('POST', '/devices', state.adminToken, { serial: `OX-${run}`, kind: 'pulse_oximeter', patient_id: patient.id });
  await server.startBroker();
  const booked = await bookVideoVisitNow(server.api, state.adminToken, patient.id, CLINICIAN, 'E2E video follow-up');
  state.appointmentId = booked.id;
  state.joinUrl = booked.join_url;
}

/**
 * An init script: the page's camera goes out as H.264 (the codec put first on its transceiver),
 * and its connections are kept in `window.__pcs` for `sentVideoCodecs`.
 */
function preferH264() {
  const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const transceiver = addTransceiver.call(this, trackOrKind, init);
    (window.__pcs ??= []).push(this);
    if (typeof trackOrKind !== 'string' && trackOrKind.kind === 'video') {
      const codecs = RTCRtpReceiver.getCapabilities('video').codecs;
      const h264 = (c) => /h264/i.test(c.mimeType);
      transceiver.setCodecPreferences([...codecs.filter(h264), ...codecs.filter((c) => !h264(c))]);
    }
    return transceiver;
  };
}

/** In the page (after `preferH264`): the codec of each video layer its latest connection sends, joined. */
async function sentVideoCodecs() {
  const stats = await window.__pcs.at(-1).getStats();
  const codecs = [];
  stats.forEach((report) => {
    if (report.type === 'outbound-rtp' && report.kind === 'video') codecs.push(stats.get(report.codecId)?.mimeType);
  });
  return codecs.join();
}

async function newContext() {
  const context = await state.browser.newContext({ viewport: { width: 1100, height: 900 } });
  await context.grantPermissions(['camera', 'microphone'], { origin: server.base });
  return context;
}

async function phase(page, expected, timeout = WAIT) {
  return poll(`the page's visit phase to be ${expected}`, async () => {
    const phases = await page.getByTestId('visit-phase').evaluateAll((els) => els.map((e) => e.dataset.phase ?? ''));
    return phases.includes(expected) ? true : false;
  }, timeout);
}

/** Waits until the one remote tile of `role` decodes more video frames than `after` and has heard audio. */
async function receivesMedia(page, role, after = 0) {
  const tile = page.locator(`[data-testid="remote-tile"][data-role="${role}"]`);
  return poll(`${role}'s video to be decoded (framesDecoded > ${after}) with audio`, async () => {
    const frames = Number((await tile.getAttribute('data-frames-decoded')) ?? 0);
    const level = Number((await tile.getAttribute('data-max-audio-level')) ?? 0);
    if (frames > after + 10 && level > 0) return frames;
    throw new Error(`frames ${frames}, max audio level ${level}`);
  }, 45_000, 500);
}

describe('a video visit between two browsers through the SFU', { timeout: 300_000 }, () => {
  before(async () => {
    requireChromiumAndBuild();
    await startServerAndBookVisit();
    state.browser = await launchChromium({ fakeMedia: true });
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await server.stop();
  });

  test('waiting room, admission, media both ways, reload without readmission, end', async () => {
    const clinicianContext = await newContext();
    const clinician = await newPage(clinicianContext, state.problems);
    clinician.on('dialog', (d) => void d.accept());
    await signIn(clinician, server.base, CLINICIAN);
    await clinician.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    await clinician.goto(`${server.base}/visits/${state.appointmentId}`);
    await clinician.getByTestId('start-visit').click();
    await phase(clinician, 'in_call');

    // The patient: consent, device check, waiting room.
    const patientContext = await newContext();
    const patient = await newPage(patientContext, state.problems);
    // The patient's visit socket passes through the test, which can cut it as a network drop would.
    const patientSockets = [];
    await patient.routeWebSocket(/\/ws$/, (socket) => {
      patientSockets.push({ page: socket, server: socket.connectToServer() });
    });
    await patient.goto(state.joinUrl);
    await patient.getByRole('button', { name: 'I agree' }).click();
    await patient.getByRole('button', { name: 'Check camera and microphone' }).click();
    // The device check: the camera and microphone to choose from, a level meter that moves with
    // the (fake, beeping) microphone, and the network check's verdict.
    await poll('a camera to choose', async () => (await patient.getByLabel('Camera', { exact: true }).locator('option').count()) >= 1);
    const microphones = patient.getByLabel('Microphone', { exact: true }).locator('option');
    await poll('a microphone to choose', async () => (await microphones.count()) >= 1);
    await poll('the microphone level meter to move', async () => Number(await patient.getByTestId('mic-level').getAttribute('data-peak')) > 0.01);
    await poll('the network check\'s verdict', async () => (await patient.getByTestId('network-check').getAttribute('data-verdict')) === 'good');
    await expectText(patient.getByTestId('network-check'), /connection to the clinic is good \(\d+ ms/);
    // Choosing a device again reopens it: the preview keeps playing.
    await patient.getByLabel('Microphone', { exact: true }).selectOption({ index: (await microphones.count()) - 1 });
    await poll('the preview playing after the choice', async () => patient.getByTestId('preview').evaluate((v) => v.srcObject !== null && !v.paused && v.readyState >= 2));
    await patient.getByRole('button', { name: 'Join the waiting room' }).click();
    await phase(patient, 'waiting');
    assert.equal(await patient.getByTestId('remote-tile').count(), 0, 'a waiting patient sees nobody');

    // The clinician sees them waiting and admits them.
    const waiting = clinician.getByTestId('waiting-participant');
    await expectText(waiting, PATIENT.family);
    await waiting.getByRole('button', { name: 'Admit' }).click();
    await phase(patient, 'in_call');
    const patientSaw = await receivesMedia(patient, 'clinician');
    const clinicianSaw = await receivesMedia(clinician, 'patient');
    // Connection statistics measured by the server: the clinician sees the patient's on their
    // tile; the patient sees their own connection named.
    const patientTile = clinician.locator('[data-testid="remote-tile"][data-role="patient"]');
    await expectText(patientTile.getByTestId('tile-connection'), /connection: ↑ \d+(\.\d)? [kM]b\/s .*↓ .* jitter \d{1,3} ms · RTT \d+ ms/);
    await poll('the patient told how their connection is', async () => ['good', 'fair', 'poor'].includes(await patient.getByTestId('own-connection').getAttribute('data-quality')));
    // Audio levels: with the clinician's microphone muted, the patient (their fake microphone
    // beeps) is the one speaking, and the dominant speaker on both sides.
    await clinician.getByRole('button', { name: 'Mute microphone' }).click();
    await poll('the patient as the dominant speaker on the clinician\'s page', async () => (await patientTile.getAttribute('data-speaking')) === 'true' && /\bdominant\b/.test((await patientTile.getAttribute('class')) ?? ''));
    const clinicianTile = patient.locator('[data-testid="remote-tile"][data-role="clinician"]');
    await poll('the muted clinician not speaking on the patient\'s page', async () => (await clinicianTile.getAttribute('data-speaking')) === 'false' && (await patient.getByTestId('self-view').getAttribute('data-speaking')) === 'true');
    await clinician.getByRole('button', { name: 'Unmute microphone' }).click();
    // The clinician changes microphone during the call (to another of Chromium's fake ones): the
    // patient goes on hearing them, now from the new one, without the call being interrupted.
    await clinician.getByText('Camera and microphone', { exact: true }).click();
    const callMicrophones = clinician.getByTestId('call-microphone');
    const otherMicrophone = await poll('another microphone to choose during the call', async () => {
      const current = await callMicrophones.inputValue();
      const values = await callMicrophones.locator('option').evaluateAll((options) => options.map((o) => o.value));
      return values.find((value) => value !== current) ?? false;
    });
    await callMicrophones.selectOption(otherMicrophone);
    const microphoneInUse = () => clinician.getByTestId('self-view').evaluate((v) => v.srcObject.getAudioTracks().map((t) => `${t.readyState} ${t.getSettings().deviceId}`).join());
    await poll('the clinician\'s call using the chosen microphone', async () => (await microphoneInUse()) === `live ${otherMicrophone}`);
    await clinicianTile.evaluate((tile) => { tile.dataset.maxAudioLevel = '0'; });
    await poll('the patient hearing the clinician\'s new microphone', async () => Number(await clinicianTile.getAttribute('data-max-audio-level')) > 0);
    // The patient on a poor network chooses audio only: the clinician's video stops reaching
    // them (framesDecoded stands still over a stats interval) and the clinician sees the
    // patient's camera as off; video comes back when the patient asks for it.
    await patient.getByTestId('audio-only').click();
    await expectText(patient.getByTestId('audio-only-note'), 'Audio only');
    const clinicianVideo = patient.locator('[data-testid="remote-tile"][data-role="clinician"]');
    let framesBefore = -1;
    const pausedAt = await poll('the clinician\'s video to stop reaching the audio-only patient', async () => {
      const frames = Number(await clinicianVideo.getAttribute('data-frames-decoded'));
      const still = frames === framesBefore;
      framesBefore = frames;
      return still ? frames : false;
    }, WAIT, 1500);
    await expectText(patientTile.locator('figcaption'), 'camera off');
    await patient.getByRole('button', { name: 'Turn video back on' }).click();
    await receivesMedia(patient, 'clinician', pausedAt);
    await poll('the patient\'s camera on again for the clinician', async () => !/camera off/.test(await patientTile.locator('figcaption').innerText()));
    await patient.screenshot({ path: join(RESULTS, 'visit-patient.png'), fullPage: true });
    await clinician.screenshot({ path: join(RESULTS, 'visit-clinician.png'), fullPage: true });
    // During the call a reading published by the patient's oximeter appears in the clinician's
    // in-call panel, and an alarming one raises an alert there, acknowledged from the call.
    const panel = clinician.getByTestId('in-call-vitals');
    publishSenml(server.mqttPort, state.device, [{ n: 'heart_rate', u: '/min', v: 72 }]);
    await expectText(panel.getByTestId('in-call-heart_rate'), /^72\b/);
    publishSenml(server.mqttPort, state.device, [{ n: 'spo2', u: '%', v: 85 }]);
    const alertItem = panel.getByTestId('in-call-alerts').getByRole('listitem').filter({ hasText: 'SpO₂' });
    await expectText(alertItem, 'SpO₂ 85 %');
    assert.equal(await alertItem.getAttribute('data-status'), 'open');
    await alertItem.getByRole('button', { name: 'Acknowledge' }).click();
    await poll('the alert acknowledged in the panel', async () => (await alertItem.getAttribute('data-status')) === 'acknowledged');
    await clinician.screenshot({ path: join(RESULTS, 'visit-clinician-vitals.png'), fullPage: true });

    // The SFU's metrics count what it forwarded (no ids in them).
    const metrics = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
    const value = (name) => Number(metrics.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1] ?? NaN);
    assert.ok(value('bedside_sfu_forwarded_packets_total') > 100, `forwarded packets in:\n${metrics.split('\n').filter((l) => l.startsWith('bedside_sfu')).join('\n')}`);
    assert.equal(value('bedside_sfu_participants'), 2);
    assert.equal(value('bedside_sfu_rooms'), 1);
    assert.ok(value('bedside_sfu_participant_round_trip_seconds_count') > 0, 'round trips measured');
    assert.match(metrics, /^bedside_sfu_participant_loss_ratio_count\{direction="receiving"\} \d+/m);

    // The clinician invites an interpreter: the guest opens the single-use link, waits, is
    // admitted, and all three see and hear each other.
    await clinician.getByLabel('Guest (what to call them)').fill('Interpreter');
    await clinician.getByRole('button', { name: 'Create guest link' }).click();
    const guestUrl = await clinician.getByTestId('guest-link-url').inputValue();
    const guestContext = await newContext();
    // The interpreter's browser prefers H.264 (as some do), so the call mixes codecs.
    await guestContext.addInitScript(preferH264);
    const guest = await newPage(guestContext, state.problems);
    await guest.goto(guestUrl);
    await guest.getByLabel('Your name (shown to the others in the call)').fill('Ana Interpreter');
    await guest.getByRole('button', { name: 'Continue' }).click();
    await guest.getByRole('button', { name: 'Check camera and microphone' }).click();
    await guest.getByRole('button', { name: 'Join the waiting room' }).click();
    await phase(guest, 'waiting');
    const waitingGuest = clinician.getByTestId('waiting-participant');
    await expectText(waitingGuest, 'Ana Interpreter');
    await waitingGuest.getByRole('button', { name: 'Admit' }).click();
    await phase(guest, 'in_call');
    await receivesMedia(guest, 'clinician');
    await receivesMedia(guest, 'patient');
    await receivesMedia(patient, 'guest');
    await receivesMedia(clinician, 'guest');
    await guest.screenshot({ path: join(RESULTS, 'visit-guest.png'), fullPage: true });

    // Simulcast: the clinician's camera goes out as three layers, and each tile gets the one that
    // fits it. Every admission above renegotiated the clinician's connection; their layers still
    // arrive. The patient puts the interpreter in the spotlight: the clinician's tile becomes a
    // thumbnail and gets a smaller layer, and the larger one again when the spotlight is off.
    const clinicianHeight = async () => Number(await clinicianTile.getAttribute('data-frame-height'));
    const fullHeight = await poll('the clinician\'s video at the tile\'s size', async () => {
      const height = await clinicianHeight();
      return height >= 270 ? height : false;
    }, 45_000);
    const guestTile = patient.locator('[data-testid="remote-tile"][data-role="guest"]');
    await guestTile.getByRole('button', { name: 'Spotlight' }).click();
    const smallHeight = await poll('a smaller layer of the clinician\'s video in a thumbnail', async () => {
      const height = await clinicianHeight();
      if (height > 0 && height <= fullHeight / 2) return height;
      throw new Error(`${height} px tall`);
    }, 45_000);
    await guestTile.getByRole('button', { name: 'Show everyone' }).click();
    await poll('the larger layer again', async () => (await clinicianHeight()) >= fullHeight, 45_000);
    console.log(`the clinician's video at the patient: ${fullHeight} px tall, ${smallHeight} px as a thumbnail`);
    // The interpreter's H.264 layers are ranked by the height their SPS declares: as a thumbnail
    // (the clinician spotlit) their video gets a smaller layer too, and the larger one after.
    assert.match(await guest.evaluate(sentVideoCodecs), /^(video\/H264,?)+$/i);
    const guestHeight = async () => Number(await guestTile.getAttribute('data-frame-height'));
    const guestFull = await poll('the interpreter\'s H.264 video at the tile\'s size', async () => {
      const height = await guestHeight();
      return height >= 270 ? height : false;
    }, 45_000);
    await patient.locator('[data-testid="remote-tile"][data-role="clinician"]').getByRole('button', { name: 'Spotlight' }).click();
    const guestSmall = await poll('a smaller layer of the interpreter\'s video in a thumbnail', async () => {
      const height = await guestHeight();
      if (height > 0 && height <= guestFull / 2) return height;
      throw new Error(`${height} px tall`);
    }, 45_000);
    await patient.locator('[data-testid="remote-tile"][data-role="clinician"]').getByRole('button', { name: 'Show everyone' }).click();
    await poll('the interpreter\'s larger layer again', async () => (await guestHeight()) >= guestFull, 45_000);
    console.log(`the interpreter's H.264 video at the patient: ${guestFull} px tall, ${guestSmall} px as a thumbnail`);
    const reuse = await fetch(`${server.base}/api/v1/auth/guest`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token: new URL(guestUrl).hash.slice('#t='.length), name: 'Someone else' }),
    });
    assert.equal(reuse.status, 409, 'a guest link works once');
    assert.equal((await reuse.json()).code, 'guest_link_used');

    const status = await server.api.call('GET', `/appointments/${state.appointmentId}`, state.adminToken);
    assert.equal(status.status, 'in_progress', 'admission starts the visit');

    // The patient reloads: straight back into the call, nobody admits them again.
    await patient.reload();
    await phase(patient, 'in_call', 30_000);
    assert.equal(await clinician.getByTestId('waiting-participant').count(), 0, 'the reloaded patient did not wait');
    await receivesMedia(patient, 'clinician');
    await receivesMedia(clinician, 'patient');
    assert.ok(patientSaw > 0 && clinicianSaw > 0);

    // The patient's network drops and comes back (Wi-Fi to mobile data): the visit socket is cut
    // and the browser reports going offline and online. The page opens a new socket and a new
    // media connection on its own and is back in the call without being admitted again.
    const call = patient.getByTestId('call');
    const connectionsBefore = Number(await call.getAttribute('data-media-connections'));
    const socketsBefore = patientSockets.length;
    // (Enough frames on this connection that a new one's count is told apart.)
    const framesBeforeDrop = await poll('100 frames on the connection before the drop', async () => {
      const frames = Number(await clinicianTile.getAttribute('data-frames-decoded'));
      return frames > 100 ? frames : false;
    }, 30_000);
    await patientContext.setOffline(true);
    const cut = patientSockets.at(-1);
    await cut.server.close({ code: 1006, reason: 'network lost' });
    await cut.page.close({ code: 1006, reason: 'network lost' });
    await phase(patient, 'reconnecting');
    await patientContext.setOffline(false);
    await poll('a new visit socket', async () => patientSockets.length > socketsBefore);
    await poll('a new media connection after the network came back', async () => Number(await call.getAttribute('data-media-connections')) > connectionsBefore, 45_000);
    await phase(patient, 'in_call', 30_000);
    // The new connection's statistics count from zero: media arrives on it.
    await poll('statistics of the new connection', async () => Number(await clinicianTile.getAttribute('data-frames-decoded')) < framesBeforeDrop);
    await receivesMedia(patient, 'clinician');
    assert.equal(await clinician.getByTestId('waiting-participant').count(), 0, 'the reconnected patient did not wait');

    // The clinician ends the visit: the patient is told, the appointment is finished.
    await clinician.getByTestId('end-visit').click();
    await phase(clinician, 'ended');
    await phase(patient, 'ended');
    await phase(guest, 'ended');
    const finished = await server.api.call('GET', `/appointments/${state.appointmentId}`, state.adminToken);
    assert.equal(finished.status, 'finished');

    await clinicianContext.close();
    await patientContext.close();
    await guestContext.close();
    assert.deepEqual(state.problems, [], 'no CSP violations or uncaught errors in the pages');
  });
});
