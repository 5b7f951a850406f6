import { describe, expect, it } from 'vitest';
import { shownHeight } from '../src/lib/simulcast';

describe('shownHeight', () => {
  it('counts device pixels, clamped to the server limits', () => {
    expect(shownHeight(180, 2, null)).toBe(360);
    expect(shownHeight(0, 1, null)).toBe(1);
    expect(shownHeight(5000, 1, null)).toBe(4320);
    expect(shownHeight(100, 0, null)).toBe(100);
  });

  it('skips changes under a tenth', () => {
    expect(shownHeight(365, 1, 360)).toBeNull();
    expect(shownHeight(420, 1, 360)).toBe(420);
    expect(shownHeight(300, 1, 360)).toBe(300);
  });
});
