// A participant's connection as the server measures it (the `stats` message of the visit
// socket, docs/signaling.md), and how it reads to a person: good, fair or poor.

export interface DirectionStats {
  bitrate_bps: number;
  /** Share of packets lost, 0–1. */
  loss: number;
  jitter_ms: number;
}

export interface ConnectionStats {
  participant_id: string;
  /** What the participant sends, as it reaches the server. */
  sending: DirectionStats;
  /** What the server sends them, as they report receiving it. */
  receiving: DirectionStats;
  round_trip_ms: number | null;
}

export type Quality = 'good' | 'fair' | 'poor';

/**
 * Poor when a call is hard to follow: over 5 % of packets lost either way (video freezes, audio
 * drops out) or a round trip over 400 ms (people talk over each other). Fair from 2 % or
 * 200 ms, where video degrades first. The thresholds follow ITU-T G.114's 400 ms and what
 * Opus and VP8 conceal without being noticed.
 */
export function quality(stats: ConnectionStats): Quality {
  const loss = Math.max(stats.sending.loss, stats.receiving.loss);
  const rtt = stats.round_trip_ms ?? 0;
  if (loss > 0.05 || rtt > 400) return 'poor';
  if (loss > 0.02 || rtt > 200) return 'fair';
  return 'good';
}

/** Bits per second as people read them: "850 kb/s", "1.2 Mb/s". */
export function formatBitrate(bps: number): string {
  if (bps >= 1_000_000) return `${(bps / 1_000_000).toFixed(1)} Mb/s`;
  return `${Math.round(bps / 1000)} kb/s`;
}

/** One line for a participant's tile: both directions, loss, jitter and round trip. */
export function describe(stats: ConnectionStats): string {
  const pct = (share: number) => `${(share * 100).toFixed(1)} %`;
  const parts = [
    `↑ ${formatBitrate(stats.sending.bitrate_bps)} (loss ${pct(stats.sending.loss)})`,
    `↓ ${formatBitrate(stats.receiving.bitrate_bps)} (loss ${pct(stats.receiving.loss)})`,
    `jitter ${Math.round(Math.max(stats.sending.jitter_ms, stats.receiving.jitter_ms))} ms`,
  ];
  if (stats.round_trip_ms !== null) parts.push(`RTT ${Math.round(stats.round_trip_ms)} ms`);
  return parts.join(' · ');
}
