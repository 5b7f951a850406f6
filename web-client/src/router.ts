// History-API routing (no hashes): patterns like "/patients/:id".

export interface Match {
  params: Record<string, string>;
}

export function matchPath(pattern: string, path: string): Match | null {
  const norm = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);
  const pp = norm(pattern).split('/');
  const xp = norm(path).split('/');
  if (pp.length !== xp.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pp.length; i++) {
    const seg = pp[i]!;
    const val = xp[i]!;
    if (seg.startsWith(':')) {
      if (val === '') return null;
      try {
        params[seg.slice(1)] = decodeURIComponent(val);
      } catch {
        return null;
      }
    } else if (seg !== val) {
      return null;
    }
  }
  return { params };
}

/** Whether a click on a link should be handled in-app rather than by the browser. */
export function isInAppClick(ev: MouseEvent, a: HTMLAnchorElement, origin: string): boolean {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return false;
  if (a.target && a.target !== '_self') return false;
  if (a.hasAttribute('download') || a.getAttribute('rel') === 'external') return false;
  const href = a.getAttribute('href');
  if (!href || href.startsWith('#')) return false;
  let url: URL;
  try {
    url = new URL(a.href);
  } catch {
    return false;
  }
  if (url.origin !== origin) return false;
  if (url.pathname.startsWith('/api/')) return false;
  return true;
}

/** A safe in-app "next" path from a query parameter (never another origin). */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (next.startsWith('/login')) return '/';
  return next;
}
