import { api } from '../api';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { svgDataUrl } from '../lib/encoding';
import { messageForError } from '../lib/errors';
import { session } from '../session';
import type { TotpEnrollment } from '../types';
import { definitionList, pageHeading, section, type PageContext } from '../ui';

export function accountPage(ctx: PageContext): void {
  ctx.title('Account');
  const me = ctx.me!;
  const totpCard = section('Two-step sign-in', 'totp');
  const calendarCard = me.role === 'clinician' ? calendarFeedCard() : null;
  replaceChildren(
    ctx.main,
    pageHeading('Account'),
    h(
      'div',
      { class: 'cards' },
      section('You', 'you', definitionList([
        ['Name', me.name],
        ['Email', me.email],
        ['Role', me.role === 'admin' ? 'Administrator' : 'Clinician'],
      ])),
      totpCard,
      calendarCard,
    ),
  );

  const heading = h('h2', { id: 'totp-heading', tabindex: '-1' }, 'Two-step sign-in');
  const drawStatus = (enabled: boolean) => {
    if (enabled) {
      replaceChildren(totpCard, heading, h('p', null, h('span', { class: 'badge status-finished' }, 'On'), ' Signing in asks for a code from your authenticator app.'));
      return;
    }
    const alert = h('div', { class: 'form-alert', role: 'alert' });
    const start = h('button', { type: 'button', class: 'button primary' }, 'Set up two-step sign-in');
    start.addEventListener('click', async () => {
      start.disabled = true;
      alert.replaceChildren();
      try {
        drawEnrol(await api<TotpEnrollment>('/auth/totp/enroll', { method: 'POST' }));
      } catch (err) {
        start.disabled = false;
        alert.replaceChildren(h('p', null, messageForError(err)));
      }
    });
    replaceChildren(
      totpCard,
      heading,
      h('p', null, h('span', { class: 'badge status-cancelled' }, 'Off'), ' Add a code from an authenticator app to your sign-in, so a stolen password alone is not enough.'),
      alert,
      start,
    );
  };

  const drawEnrol = (e: TotpEnrollment) => {
    const form = h('form', { class: 'stack' });
    const fc = new FormController(form);
    const code = fc.add({
      name: 'code',
      label: 'Code from the app',
      required: true,
      autocomplete: 'one-time-code',
      hint: 'The 6-digit code the app shows now.',
      attrs: { inputmode: 'numeric', pattern: '[0-9 ]*', maxlength: 7 },
    });
    form.append(code.wrapper, h('div', { class: 'actions' }, submitButton('Turn on two-step sign-in'), h('button', { type: 'button', class: 'button secondary', onclick: () => drawStatus(false) }, 'Cancel')));
    fc.onSubmit(async () => {
      const answer = await api<{ recovery_codes: string[] }>('/auth/totp/confirm', { body: { code: fc.value('code').replace(/\s+/g, '') } });
      const me2 = session.me();
      if (me2) session.setMe({ ...me2, totp_enabled: true });
      drawRecovery(answer.recovery_codes ?? []);
    });
    replaceChildren(
      totpCard,
      heading,
      h(
        'ol',
        { class: 'steps' },
        h(
          'li',
          null,
          h('p', null, 'Scan this QR code with your authenticator app:'),
          h('img', { class: 'qr', src: svgDataUrl(e.qr_svg), alt: 'QR code for your authenticator app (the same key is written out below)', width: 200, height: 200 }),
          h(
            'details',
            null,
            h('summary', null, 'Cannot scan? Enter the key by hand'),
            definitionList([
              ['Key', h('code', { class: 'mono secret' }, e.secret)],
              ['Setup link', h('code', { class: 'mono wrap' }, e.otpauth_uri)],
            ]),
          ),
        ),
        h('li', null, h('p', null, 'Enter the code the app shows to confirm:'), form),
      ),
    );
    heading.focus();
  };

  const drawRecovery = (codes: string[]) => {
    replaceChildren(
      totpCard,
      heading,
      h('p', { class: 'alert success' }, h('span', { class: 'badge status-finished' }, 'On'), ' Two-step sign-in is on.'),
      h('h3', null, 'Recovery codes'),
      h('p', { class: 'alert warning' }, h('strong', null, 'These codes are shown only once.'), ' Each one signs you in once if you lose your phone. Print them or keep them in a password manager.'),
      h('ul', { class: 'recovery-codes mono', 'aria-label': 'Recovery codes' }, codes.map((c) => h('li', null, c))),
      h('button', { type: 'button', class: 'button secondary', onclick: () => drawStatus(true) }, 'I have saved my recovery codes'),
    );
    heading.focus();
  };

  drawStatus(me.totp_enabled);
}

/** A clinician's calendar subscription: a secret link to their visits. */
function calendarFeedCard(): HTMLElement {
  const card = section('Calendar', 'calendar');
  const heading = h('h2', { id: 'calendar-heading', tabindex: '-1' }, 'Calendar');
  const alert = h('div', { class: 'form-alert', role: 'alert' });
  const create = h('button', { type: 'button', class: 'button secondary' }, 'Create a calendar link');
  const off = h('button', { type: 'button', class: 'button secondary' }, 'Turn the link off');
  const shown = h('div');
  create.addEventListener('click', async () => {
    alert.replaceChildren();
    try {
      const feed = await api<{ url: string }>('/me/calendar-feed', { method: 'POST' });
      shown.replaceChildren(
        h('p', null, 'Subscribe to this link in your calendar app. It is shown once; anyone with it sees your visit times (no patient names).'),
        h('input', { type: 'text', readonly: true, class: 'mono', value: feed.url, 'aria-label': 'Calendar link', onfocus: (e: Event) => (e.target as HTMLInputElement).select() }),
      );
    } catch (err) {
      alert.replaceChildren(h('p', null, messageForError(err)));
    }
  });
  off.addEventListener('click', async () => {
    alert.replaceChildren();
    try {
      await api<void>('/me/calendar-feed', { method: 'DELETE' });
      shown.replaceChildren(h('p', null, 'The link is off; calendars subscribed to it stop updating.'));
    } catch (err) {
      alert.replaceChildren(h('p', null, messageForError(err)));
    }
  });
  replaceChildren(
    card,
    heading,
    h('p', null, 'See your visits in your own calendar app. A new link replaces the old one.'),
    alert,
    h('div', { class: 'actions' }, create, off),
    shown,
  );
  return card;
}
