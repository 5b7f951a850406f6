import { describe, expect, it } from 'vitest';
import { median, verdict } from '../src/lib/network-check';

describe('network check', () => {
  it('takes the median round trip', () => {
    expect(median([])).toBeNull();
    expect(median([40])).toBe(40);
    expect(median([90, 10, 30])).toBe(30);
    expect(median([10, 20, 30, 1000])).toBe(25);
  });

  it('calls up to 300 ms good, more slow, nothing offline', () => {
    expect(verdict(42)).toBe('good');
    expect(verdict(300)).toBe('good');
    expect(verdict(301)).toBe('slow');
    expect(verdict(null)).toBe('offline');
  });
});
