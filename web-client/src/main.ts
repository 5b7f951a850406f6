import './styles.css';
import { getClinic, loadMe, logout, setStaffSessionEndedHandler } from './api';
import { h, replaceChildren } from './dom';
import { isInAppClick, matchPath, safeNext } from './router';
import { session } from './session';
import type { Clinic, Me } from './types';
import { isAbort, loadError, pageHeading, type Page, type PageContext } from './ui';
import { loginPage } from './pages/login';
import { todayPage } from './pages/today';
import { dashboardPage } from './pages/dashboard';
import { patientsPage } from './pages/patients';
import { patientPage } from './pages/patient';
import { adminPage } from './pages/admin';
import { newPatientPage } from './pages/admin-patient-new';
import { newUserPage } from './pages/admin-user-new';
import { newDevicePage } from './pages/admin-device-new';
import { newAppointmentPage } from './pages/admin-appointment-new';
import { auditPage } from './pages/admin-audit';
import { accountPage } from './pages/account';
import { joinPage } from './pages/join';

type Access = 'public' | 'staff' | 'admin';

interface Route {
  path: string;
  access: Access;
  /** Staff pages get the navigation bar; public pages are bare. */
  chrome: 'staff' | 'bare';
  nav?: string;
  page: Page;
}

// The chart page brings uPlot: loaded when first needed.
const patientChartPage: Page = async (ctx) => (await import('./pages/patient-chart')).patientChartPage(ctx);
const guestPage: Page = async (ctx) => (await import('./pages/guest')).guestPage(ctx);
const visitPage: Page = async (ctx) => (await import('./pages/visit')).visitPage(ctx);

const routes: Route[] = [
  { path: '/login', access: 'public', chrome: 'bare', page: loginPage },
  { path: '/join', access: 'public', chrome: 'bare', page: joinPage },
  { path: '/guest', access: 'public', chrome: 'bare', page: guestPage },
  { path: '/', access: 'staff', chrome: 'staff', page: homeRedirect },
  { path: '/dashboard', access: 'staff', chrome: 'staff', nav: '/dashboard', page: dashboardPage },
  { path: '/today', access: 'staff', chrome: 'staff', nav: '/today', page: todayPage },
  { path: '/patients', access: 'staff', chrome: 'staff', nav: '/patients', page: patientsPage },
  { path: '/patients/:id', access: 'staff', chrome: 'staff', nav: '/patients', page: patientPage },
  { path: '/patients/:id/chart', access: 'staff', chrome: 'staff', nav: '/patients', page: patientChartPage },
  { path: '/visits/:id', access: 'staff', chrome: 'staff', nav: '/today', page: visitPage },
  { path: '/admin', access: 'admin', chrome: 'staff', nav: '/admin', page: adminPage },
  { path: '/admin/patients/new', access: 'admin', chrome: 'staff', nav: '/admin', page: newPatientPage },
  { path: '/admin/users/new', access: 'admin', chrome: 'staff', nav: '/admin', page: newUserPage },
  { path: '/admin/devices/new', access: 'admin', chrome: 'staff', nav: '/admin', page: newDevicePage },
  { path: '/admin/appointments/new', access: 'admin', chrome: 'staff', nav: '/admin', page: newAppointmentPage },
  { path: '/admin/audit', access: 'admin', chrome: 'staff', nav: '/admin', page: auditPage },
  { path: '/account', access: 'staff', chrome: 'staff', nav: '/account', page: accountPage },
];

function homeRedirect(ctx: PageContext): void {
  ctx.navigate(ctx.me?.role === 'admin' ? '/admin' : '/dashboard', { replace: true });
}

const header = document.getElementById('app-header')!;
const main = document.getElementById('main')!;
const flashArea = document.getElementById('flash')!;

let current: AbortController | null = null;
let pendingFlash: string | null = null;
let renderCount = 0;

function navigate(path: string, opts: { replace?: boolean; flash?: string } = {}): void {
  if (opts.flash) pendingFlash = opts.flash;
  if (opts.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  void render();
}

function setTitle(title: string, clinic: Clinic | null): void {
  document.title = `${title} · ${clinic?.name ?? 'Bedside'}`;
}

function renderNav(me: Me, clinic: Clinic | null, active: string | undefined): void {
  const item = (href: string, text: string) =>
    h('li', null, h('a', { href, 'aria-current': active === href ? 'page' : undefined }, text));
  replaceChildren(
    header,
    h(
      'div',
      { class: 'bar' },
      h('a', { class: 'brand', href: '/' }, 'Bedside', clinic ? h('span', { class: 'brand-clinic' }, clinic.name) : null),
      h(
        'nav',
        { 'aria-label': 'Main' },
        h(
          'ul',
          null,
          item('/dashboard', 'Dashboard'),
          item('/today', 'Today'),
          item('/patients', 'Patients'),
          me.role === 'admin' ? item('/admin', 'Admin') : null,
          item('/account', 'Account'),
          h(
            'li',
            null,
            h(
              'button',
              {
                type: 'button',
                class: 'link-button',
                onclick: async () => {
                  await logout();
                  navigate('/login', { flash: 'You have been signed out.' });
                },
              },
              'Log out',
            ),
          ),
        ),
      ),
      h('p', { class: 'whoami' }, h('span', { class: 'visually-hidden' }, 'Signed in as '), me.name, h('span', { class: 'role' }, me.role)),
    ),
  );
  header.hidden = false;
}

async function render(): Promise<void> {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const count = ++renderCount;
  const path = location.pathname;
  const query = new URLSearchParams(location.search);

  let route: Route | undefined;
  let params: Record<string, string> = {};
  for (const r of routes) {
    const m = matchPath(r.path, path);
    if (m) {
      route = r;
      params = m.params;
      break;
    }
  }

  let clinic: Clinic | null = null;
  try {
    clinic = await getClinic();
  } catch {
    // pages that need it show their own error
  }
  if (controller.signal.aborted) return;

  let me: Me | null = null;
  const needsStaff = !route || route.access !== 'public';
  if (needsStaff) {
    if (!session.staff()) {
      const next = path + location.search;
      navigate(`/login${next && next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`, { replace: true });
      return;
    }
    try {
      me = await loadMe();
    } catch (err) {
      if (controller.signal.aborted) return;
      if (!session.staff()) return; // the session ended: the handler went to /login
      header.hidden = true;
      replaceChildren(main, pageHeading('Bedside'), loadError(err));
      return;
    }
    if (controller.signal.aborted) return;
    if (!me) return;
  }

  if (route?.chrome === 'staff' && me) renderNav(me, clinic, route.nav);
  else if (!route && me) renderNav(me, clinic, undefined);
  else {
    header.hidden = true;
    replaceChildren(header);
  }

  flashArea.textContent = pendingFlash ?? '';
  pendingFlash = null;

  main.replaceChildren(h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  const ctx: PageContext = {
    main,
    params,
    query,
    signal: controller.signal,
    me,
    clinic,
    navigate,
    title: (t) => setTitle(t, clinic),
  };

  if (!route) {
    ctx.title('Not found');
    replaceChildren(main, pageHeading('Page not found'), h('p', null, 'There is no page at this address. ', h('a', { href: '/' }, 'Go to the start page'), '.'));
  } else if (route.access === 'admin' && me?.role !== 'admin') {
    ctx.title('Not allowed');
    replaceChildren(main, pageHeading('Not allowed'), h('p', null, 'This page is for clinic administrators.'));
  } else {
    try {
      main.setAttribute('aria-busy', 'true');
      await route.page(ctx);
    } catch (err) {
      if (isAbort(err) || controller.signal.aborted) return;
      replaceChildren(main, pageHeading('Something went wrong'), loadError(err));
    } finally {
      if (count === renderCount) main.removeAttribute('aria-busy');
    }
  }
  if (controller.signal.aborted || count !== renderCount) return;
  // Move focus to the new page's heading so keyboard and screen-reader users start there.
  if (count > 1) {
    const h1 = main.querySelector<HTMLElement>('h1');
    (h1 ?? main).focus({ preventScroll: false });
    window.scrollTo(0, 0);
  }
}

setStaffSessionEndedHandler(() => {
  const next = location.pathname + location.search;
  if (location.pathname === '/login' || location.pathname === '/join') return;
  navigate(`/login?next=${encodeURIComponent(safeNext(next))}`, { replace: true, flash: 'Your session has ended. Please sign in again.' });
});

document.addEventListener('click', (ev) => {
  const a = (ev.target as Element | null)?.closest?.('a');
  if (!a || !(a instanceof HTMLAnchorElement)) return;
  if (!isInAppClick(ev, a, location.origin)) return;
  ev.preventDefault();
  const url = new URL(a.href);
  navigate(url.pathname + url.search + url.hash);
});

document.getElementById('skip-link')?.addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

window.addEventListener('popstate', () => void render());

void render();
