/**
 * Reads the join token from a URL fragment such as "#t=abc" (also accepts "#token=abc").
 * Parsed by hand rather than with URLSearchParams, which would turn "+" into a space.
 */
export function joinTokenFromHash(hash: string): string | null {
  const raw = hash.startsWith('#') ? hash.slice(1) : hash;
  for (const pair of raw.split('&')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const key = pair.slice(0, eq);
    if (key !== 't' && key !== 'token') continue;
    let value = pair.slice(eq + 1);
    try {
      value = decodeURIComponent(value);
    } catch {
      // keep it as it is
    }
    value = value.trim();
    return value === '' ? null : value;
  }
  return null;
}
