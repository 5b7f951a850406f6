import { describe, expect, it } from 'vitest';
import { CAMERA_SIZE, shownHeight, simulcastEncodings } from '../src/lib/simulcast';

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

describe('simulcastEncodings', () => {
  it('sends three distinct layers, smallest first, each with a bitrate ceiling', () => {
    const layers = simulcastEncodings();
    expect(layers.map((layer) => layer.rid)).toEqual(['q', 'h', 'f']);
    // The full layer is the capture size; each smaller one halves it.
    expect(layers.map((layer) => CAMERA_SIZE.height / (layer.scaleResolutionDownBy ?? 1))).toEqual([135, 270, 540]);
    const ceilings = layers.map((layer) => layer.maxBitrate ?? Infinity);
    expect(ceilings.every(Number.isFinite)).toBe(true);
    expect([...ceilings].sort((a, b) => a - b)).toEqual(ceilings);
  });

  it('gives a fresh list each time (a sender may keep and change it)', () => {
    expect(simulcastEncodings()).not.toBe(simulcastEncodings());
  });
});
