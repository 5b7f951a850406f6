// End-to-end: the real bedside server + Debian's Chromium.
// An admin signs in, adds a patient and a clinician, books a video visit and copies the
// join link; the clinician then signs in and sees the visit on their Today page.
//
// Inputs (environment):
//   BEDSIDE_BIN          the bedside binary (default ../target/debug/bedside, relative to web-client)
//   BEDSIDE_TEST_PG_URL  a PostgreSQL server URL (default postgres://postgres@127.0.0.1:5432/postgres);
//                        the test creates and drops a database e2e_<random> on it
// Output: test-results/clinician-today.png (and server.log, join-page.png).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BedsideServer } from './bedside-server.mjs';
import { RESULTS, expectText, expectUrl, launchChromium, newPage, poll, requireChromiumAndBuild, signIn } from './support.mjs';

const run = randomBytes(4).toString('hex');
const ADMIN = { role: 'admin', email: 'admin@e2e.test', name: 'E2E Admin', password: `e2e-Admin-pass-${run}-long` };
const CLINICIAN = { email: `clinician-${run}@e2e.test`, name: `Dr. Elena Test ${run}`, password: `e2e-Clinician-pass-${run}-long` };
const PATIENT = { given: 'Mira', family: `Okafor-${run}`, mrn: `E2E-${run.toUpperCase()}`, birth: '1984-05-17' };

// ---------- helpers ----------

function wall(ms, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', { timeZone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit' })
      .formatToParts(new Date(ms))
      .map((p) => [p.type, p.value]),
  );
  return { date: `${parts.year}-${parts.month}-${parts.day}`, time: `${parts.hour === '24' ? '00' : parts.hour}:${parts.minute}` };
}

/** A start ~1 hour from now, on today's date in the clinic if at all possible. */
export function pickStart(nowMs, timeZone) {
  const up = (ms, min) => Math.ceil(ms / (min * 60_000)) * min * 60_000;
  const today = wall(nowMs, timeZone).date;
  for (const lead of [60, 30, 10]) {
    const w = wall(up(nowMs + lead * 60_000, 5), timeZone);
    if (w.date === today) return { ...w, today };
  }
  return { ...wall(up(nowMs + 60 * 60_000, 5), timeZone), today }; // just before midnight: tomorrow
}

// ---------- fixture ----------

const server = new BedsideServer({
  db: `e2e_${run}`,
  users: [ADMIN],
  // This test is about records; the device gateway (and its broker) is not needed.
  broker: false,
  log: 'server.log',
});
const state = { browser: null, joinUrl: null, consoleProblems: [] };

// ---------- the test ----------

describe('admin books a video visit; the clinician sees it', { timeout: 300_000 }, () => {
  before(async () => {
    requireChromiumAndBuild();
    await server.start();
    state.browser = await launchChromium();
  });

  after(async () => {
    await state.browser?.close().catch(() => {});
    await server.stop();
  });

  test('admin → patient, clinician, booking, join link; clinician → Today', async () => {
    const clinic = await (await fetch(`${server.base}/api/v1/clinic`)).json();
    assert.equal(typeof clinic.time_zone, 'string', `GET /api/v1/clinic gave ${JSON.stringify(clinic)}`);
    const serverNow = Date.parse(clinic.now);
    const start = pickStart(Number.isNaN(serverNow) ? Date.now() : serverNow, clinic.time_zone);

    const context = await state.browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
    const page = await newPage(context, state.consoleProblems);

    // 1. The admin signs in and lands on /admin.
    await signIn(page, server.base, ADMIN);
    await expectUrl(page, '/admin');
    await page.getByRole('heading', { name: 'Administration', level: 1 }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).waitFor();

    // 2. Adds a patient.
    await page.getByRole('link', { name: /^Add patient/ }).click();
    await expectUrl(page, '/admin/patients/new');
    await page.getByLabel('Given name').fill(PATIENT.given);
    await page.getByLabel('Family name').fill(PATIENT.family);
    await page.getByLabel('MRN').fill(PATIENT.mrn);
    await page.getByLabel('Date of birth').fill(PATIENT.birth);
    await page.getByLabel('Sex').selectOption('female');
    await page.getByLabel('Email (optional)').fill(`mira-${run}@e2e.test`);
    await page.getByRole('button', { name: 'Add patient' }).click();
    await page.getByRole('heading', { level: 1, name: `${PATIENT.given} ${PATIENT.family}` }).waitFor();
    await expectText(page.locator('#flash'), 'added');
    assert.match(new URL(page.url()).pathname, /^\/patients\/[^/]+$/);

    // 3. Adds a clinician with a password.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('link', { name: /^Add user/ }).click();
    await expectUrl(page, '/admin/users/new');
    await page.getByLabel('Full name').fill(CLINICIAN.name);
    await page.getByLabel('Email').fill(CLINICIAN.email);
    await page.getByLabel('Role').selectOption('clinician');
    await page.getByLabel('Qualification (optional)').fill('MD, General practice');
    await page.getByLabel('Initial password').fill(CLINICIAN.password);
    await page.getByRole('button', { name: 'Create user' }).click();
    await expectText(page.getByRole('status').filter({ hasText: 'created' }), `User ${CLINICIAN.name} created.`);

    // 4. Books a video appointment ~1 hour from now for that patient with that clinician.
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Admin' }).click();
    await page.getByRole('link', { name: /^Book appointment/ }).click();
    await expectUrl(page, '/admin/appointments/new');
    await page.getByRole('heading', { name: 'Book appointment', level: 1 }).waitFor();
    const patientSelect = page.getByLabel('Patient');
    await poll('the new patient in the patient list', async () => (await patientSelect.locator('option').allInnerTexts()).some((t) => t.includes(PATIENT.family)));
    const patientOption = (await patientSelect.locator('option').allInnerTexts()).find((t) => t.includes(PATIENT.family));
    await patientSelect.selectOption({ label: patientOption });
    const clinicianSelect = page.getByLabel('Clinician');
    const clinicianOption = (await clinicianSelect.locator('option').allInnerTexts()).find((t) => t.includes(CLINICIAN.name));
    assert.ok(clinicianOption, `the clinician is not among ${await clinicianSelect.locator('option').allInnerTexts()}`);
    await clinicianSelect.selectOption({ label: clinicianOption });
    await page.getByLabel('Date', { exact: true }).fill(start.date);
    await page.getByLabel('Start time').fill(start.time);
    await page.getByLabel('Duration (minutes)').fill('30');
    await page.getByLabel('Kind').selectOption('video');
    await page.getByLabel('Reason').fill('E2E follow-up');
    await page.getByRole('button', { name: 'Book appointment' }).click();
    const booked = page.getByRole('region', { name: 'Appointment booked' });
    await booked.waitFor();
    await expectText(booked, start.time);
    await expectText(booked, PATIENT.family);

    // 5. Sees and copies the join link.
    const joinUrl = await page.getByLabel('Join link').inputValue();
    const parsed = new URL(joinUrl);
    assert.equal(parsed.origin, server.base, `join_url ${joinUrl} should be on ${server.base}`);
    assert.equal(parsed.pathname, '/join', `join_url ${joinUrl} should go to /join`);
    assert.match(parsed.hash, /^#t=.+/, `join_url ${joinUrl} should carry the token in #t=`);
    await page.getByRole('button', { name: 'Copy join link' }).click();
    await expectText(booked.getByRole('status').filter({ hasText: 'Copied' }), 'Copied.');
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.equal(copied, joinUrl);
    state.joinUrl = joinUrl;

    // 6. Logs out.
    await page.getByRole('button', { name: 'Log out' }).click();
    await expectUrl(page, '/login');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('bedside.staff')), null, 'tokens must be gone after logout');

    // 7. The clinician signs in (clinicians start on the dashboard) and sees the visit on Today.
    await signIn(page, server.base, CLINICIAN);
    await expectUrl(page, '/dashboard');
    await page.getByRole('heading', { name: 'Dashboard', level: 1 }).waitFor();
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Today' }).click();
    await expectUrl(page, '/today');
    await page.getByRole('heading', { name: 'Today', level: 1 }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Admin' }).count(), 0, 'clinicians get no Admin link');
    const shown = await page.getByTestId('shown-date').getAttribute('data-date');
    if (shown !== start.date) {
      // Booked just before midnight: the visit is on the next day.
      assert.equal(start.date > shown, true, `booked ${start.date}, Today shows ${shown}`);
      await page.getByRole('link', { name: /Next day/ }).click();
      await poll(`the day view of ${start.date}`, async () => (await page.getByTestId('shown-date').getAttribute('data-date')) === start.date);
    }
    const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: new RegExp(PATIENT.family) }) });
    await row.waitFor();
    await expectText(row, start.time);
    await expectText(row, 'Booked');
    await expectText(row, 'Video');
    await row.getByRole('button', { name: /^Mark arrived/ }).waitFor();
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'clinician-today.png'), fullPage: true });

    await context.close();
    assert.deepEqual(state.consoleProblems, [], 'no CSP violations or uncaught errors in the page');
  });

  test('the patient opens the join link', async (t) => {
    if (!state.joinUrl) return t.skip('no join link (the booking test failed)');
    const context = await state.browser.newContext({ viewport: { width: 900, height: 900 } });
    const page = await newPage(context, state.consoleProblems);
    await page.goto(state.joinUrl);
    const heading = page.getByRole('heading', { level: 1 });
    await poll('the join page to settle', async () => /not opened yet|Your visit|expired|does not work|could not be opened/.test(await heading.innerText()) && !(await page.getByText('Opening your visit…').count()));
    const title = await heading.innerText();
    if (/not opened yet/.test(title)) {
      // The link opens some time before the visit; ~1 hour ahead it may still be closed.
      await expectText(page.getByRole('alert'), /It opens at/);
    } else {
      assert.equal(title, 'Your visit', `join page says: ${await page.locator('main').innerText()}`);
      await expectText(page.locator('main'), CLINICIAN.name);
      await expectText(page.locator('main'), `Hello ${PATIENT.given}.`);
      const agree = page.getByRole('button', { name: 'I agree' });
      if (await agree.count()) await agree.click();
      await expectText(page.getByRole('status').filter({ hasText: 'checked in' }), "You're checked in. Check your camera and microphone, then join the waiting room.");
      assert.equal(new URL(page.url()).hash, '', 'the token is taken out of the address bar');
    }
    await page.screenshot({ path: join(RESULTS, 'join-page.png'), fullPage: true });
    await context.close();
    assert.deepEqual(state.consoleProblems, [], 'no CSP violations or uncaught errors in the page');
  });
});
