import { api, loadMe } from '../api';
import { ApiError } from '../lib/errors';
import { h, replaceChildren } from '../dom';
import { FormController, submitButton } from '../forms';
import { safeNext } from '../router';
import { session } from '../session';
import type { LoginAnswer, Tokens } from '../types';
import type { PageContext } from '../ui';

export async function loginPage(ctx: PageContext): Promise<void> {
  ctx.title('Sign in');
  const next = safeNext(ctx.query.get('next'));

  if (session.staff()) {
    // Already signed in (e.g. the back button): go on.
    try {
      if (await loadMe()) {
        ctx.navigate(next, { replace: true });
        return;
      }
    } catch {
      session.clearStaff();
    }
  }

  const finish = async (tokens: Tokens) => {
    session.saveTokens(tokens);
    session.setMe(null);
    await loadMe();
    ctx.navigate(next, { replace: true });
  };

  // Back from the identity provider: a one-time code, or why it failed.
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const oidcCode = fragment.get('oidc');
  const oidcError = fragment.get('oidc_error');
  if (oidcCode || oidcError) {
    // The code is good once: keep it out of history and reloads.
    history.replaceState(history.state, '', window.location.pathname + window.location.search);
  }
  if (oidcCode) {
    try {
      await finish(await api<Tokens>('/auth/oidc/exchange', { auth: 'none', body: { code: oidcCode } }));
      return;
    } catch {
      // Falls through to the form with the message below.
    }
  }
  const signIn = ctx.clinic?.sign_in ?? { password: true, provider: null };
  const providerButton = signIn.provider
    ? h(
        'a',
        {
          class: 'button',
          href: `/api/v1/auth/oidc/login?next=${encodeURIComponent(next)}`,
        },
        `Sign in with ${signIn.provider}`,
      )
    : null;
  const providerProblem =
    oidcCode || oidcError
      ? h(
          'p',
          { class: 'alert error', role: 'alert' },
          oidcError === 'no_role' || oidcError === 'role_mismatch' || oidcError === 'no_account'
            ? 'Your account at the clinic’s sign-in service does not give you access to Bedside. Ask an admin.'
            : 'Signing in through the clinic’s sign-in service did not work. Try again.',
        )
      : null;

  const showPasswordStep = () => {
    const form = h('form', { class: 'stack', 'aria-labelledby': 'login-heading' });
    const fc = new FormController(form);
    const email = fc.add({ name: 'email', label: 'Email', type: 'email', required: true, autocomplete: 'username', attrs: { autocapitalize: 'off', spellcheck: 'false' } });
    const password = fc.add({ name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' });
    form.append(email.wrapper, password.wrapper, h('div', { class: 'actions' }, submitButton('Sign in')));
    fc.onSubmit(async () => {
      const answer = await api<LoginAnswer>('/auth/login', {
        auth: 'none',
        body: { email: fc.value('email'), password: fc.control('password').value },
      });
      if ('totp_required' in answer && answer.totp_required) {
        showTotpStep(answer.challenge_token);
      } else {
        await finish(answer as Tokens);
      }
    });
    replaceChildren(
      ctx.main,
      h(
        'div',
        { class: 'narrow card' },
        h('h1', { id: 'login-heading', tabindex: '-1' }, 'Sign in'),
        ctx.clinic ? h('p', { class: 'muted' }, ctx.clinic.name) : null,
        providerProblem,
        providerButton,
        signIn.password ? form : null,
      ),
    );
    if (signIn.password) email.control.focus();
  };

  const showTotpStep = (challenge: string) => {
    const form = h('form', { class: 'stack', 'aria-labelledby': 'totp-heading' });
    const fc = new FormController(form);
    const code = fc.add({
      name: 'code',
      label: 'Authentication code',
      required: true,
      autocomplete: 'one-time-code',
      hint: 'Enter the 6-digit code from your authenticator app, or one of your recovery codes.',
      attrs: { inputmode: 'text', autocapitalize: 'off', spellcheck: 'false' },
    });
    form.append(
      code.wrapper,
      h(
        'div',
        { class: 'actions' },
        submitButton('Verify'),
        h('button', { type: 'button', class: 'button secondary', onclick: () => showPasswordStep() }, 'Start again'),
      ),
    );
    fc.onSubmit(async () => {
      const raw = fc.value('code');
      const compact = raw.replace(/\s+/g, '');
      let tokens: Tokens;
      try {
        tokens = await api<Tokens>('/auth/login/totp', {
          auth: 'none',
          body: { challenge_token: challenge, code: /^\d{6}$/.test(compact) ? compact : raw },
        });
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || (err.status === 422 && !err.field))) {
          fc.fieldError('code', 'That code is not correct, or the sign-in took too long. Try again, or start again.');
          fc.generalError('The code was not accepted.');
          fc.control('code').focus();
          return;
        }
        throw err;
      }
      await finish(tokens);
    });
    replaceChildren(
      ctx.main,
      h(
        'div',
        { class: 'narrow card' },
        h('h1', { id: 'totp-heading', tabindex: '-1' }, 'Two-step verification'),
        h('p', null, 'Your account is protected with an authenticator app.'),
        form,
      ),
    );
    code.control.focus();
  };

  showPasswordStep();
}
