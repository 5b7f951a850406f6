// The patient's "short network check" before the waiting room: how long a round trip to the
// clinic's server takes, and what that means for a video call.

export type NetworkVerdict = 'good' | 'slow' | 'offline';

/** The median of `samples` (milliseconds); null for none. */
export function median(samples: number[]): number | null {
  if (samples.length === 0) return null;
  const sorted = [...samples].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Good up to 300 ms round trip to the server (a call's media takes about the same path); slow
 * above, where talking over each other starts (ITU-T G.114 puts the limit of a comfortable call
 * at 400 ms one way, and media adds its own delay); offline when no request came back.
 */
export function verdict(roundTripMs: number | null): NetworkVerdict {
  if (roundTripMs === null) return 'offline';
  return roundTripMs <= 300 ? 'good' : 'slow';
}

/** Round trips to `url`, `count` of them one after another, each with a timeout; failures are left out. */
export async function measureRoundTrips(url: string, count = 5, timeoutMs = 3000): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i += 1) {
    const started = performance.now();
    try {
      const res = await fetch(url, { cache: 'no-store', signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      if (res.ok) samples.push(performance.now() - started);
    } catch {
      // Counted as missing.
    }
  }
  return samples;
}
