import { describe, expect, it } from 'vitest';
import { joinTokenFromHash } from '../src/lib/join';
import { matchPath, safeNext } from '../src/router';

describe('joinTokenFromHash', () => {
  it('reads t= from the fragment', () => {
    expect(joinTokenFromHash('#t=abc123')).toBe('abc123');
    expect(joinTokenFromHash('t=abc123')).toBe('abc123');
    expect(joinTokenFromHash('#x=1&t=abc')).toBe('abc');
    expect(joinTokenFromHash('#token=abc')).toBe('abc');
  });

  it('keeps + and decodes percent escapes', () => {
    expect(joinTokenFromHash('#t=a+b/c=')).toBe('a+b/c=');
    expect(joinTokenFromHash('#t=a%2Bb')).toBe('a+b');
  });

  it('returns null when there is no token', () => {
    expect(joinTokenFromHash('')).toBeNull();
    expect(joinTokenFromHash('#')).toBeNull();
    expect(joinTokenFromHash('#t=')).toBeNull();
    expect(joinTokenFromHash('#main')).toBeNull();
  });
});

describe('matchPath', () => {
  it('matches static and parameter segments', () => {
    expect(matchPath('/today', '/today')).toEqual({ params: {} });
    expect(matchPath('/today', '/today/')).toEqual({ params: {} });
    expect(matchPath('/patients/:id', '/patients/0193-ab')).toEqual({ params: { id: '0193-ab' } });
    expect(matchPath('/patients/:id', '/patients/')).toBeNull();
    expect(matchPath('/patients/:id', '/patients/1/notes')).toBeNull();
    expect(matchPath('/', '/')).toEqual({ params: {} });
    expect(matchPath('/', '/today')).toBeNull();
  });
});

describe('safeNext', () => {
  it('only allows paths on this site', () => {
    expect(safeNext('/patients/1')).toBe('/patients/1');
    expect(safeNext(null)).toBe('/');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('//evil.example/')).toBe('/');
    expect(safeNext('/\\evil.example')).toBe('/');
    expect(safeNext('/login?next=/x')).toBe('/');
  });
});
