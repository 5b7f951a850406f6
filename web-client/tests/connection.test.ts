import { describe as group, expect, it } from 'vitest';
import { type ConnectionStats, describe, formatBitrate, quality } from '../src/lib/connection';

function stats(sendLoss: number, receiveLoss: number, rtt: number | null): ConnectionStats {
  return {
    participant_id: 'p',
    sending: { bitrate_bps: 1_250_000, loss: sendLoss, jitter_ms: 3.2 },
    receiving: { bitrate_bps: 640_000, loss: receiveLoss, jitter_ms: 7.6 },
    round_trip_ms: rtt,
  };
}

group('quality', () => {
  it('is good on a clean, quick connection', () => {
    expect(quality(stats(0, 0.001, 40))).toBe('good');
    expect(quality(stats(0, 0, null))).toBe('good');
  });

  it('is fair from 2 % loss or 200 ms either way', () => {
    expect(quality(stats(0.03, 0, 40))).toBe('fair');
    expect(quality(stats(0, 0.021, 40))).toBe('fair');
    expect(quality(stats(0, 0, 250))).toBe('fair');
  });

  it('is poor from 5 % loss or 400 ms, whichever direction', () => {
    expect(quality(stats(0, 0.08, 40))).toBe('poor');
    expect(quality(stats(0.06, 0, 40))).toBe('poor');
    expect(quality(stats(0, 0, 450))).toBe('poor');
  });
});

group('describe', () => {
  it('reads both directions, jitter and round trip', () => {
    expect(describe(stats(0.004, 0.02, 23.4))).toBe('↑ 1.3 Mb/s (loss 0.4 %) · ↓ 640 kb/s (loss 2.0 %) · jitter 8 ms · RTT 23 ms');
  });

  it('leaves out a round trip not measured yet', () => {
    expect(describe(stats(0, 0, null))).not.toContain('RTT');
  });

  it('formats bitrates', () => {
    expect(formatBitrate(0)).toBe('0 kb/s');
    expect(formatBitrate(999_400)).toBe('999 kb/s');
    expect(formatBitrate(2_000_000)).toBe('2.0 Mb/s');
  });
});
