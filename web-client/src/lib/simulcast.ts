// Simulcast: of a publisher's layers (encodings of its camera at several sizes) the server gives
// each participant the one that fits the tile it is shown in (docs/signaling.md, `preferred_layer`).

/**
 * The height to ask for a tile shown `cssHeight` CSS pixels tall on a screen with
 * `devicePixelRatio`, or null when it changed too little since `lastSent` to be worth a message
 * (a window being resized sends a stream of sizes).
 */
export function shownHeight(cssHeight: number, devicePixelRatio: number, lastSent: number | null): number | null {
  const height = Math.max(1, Math.min(4320, Math.round(cssHeight * (devicePixelRatio || 1))));
  if (lastSent !== null && Math.abs(height - lastSent) < lastSent * 0.1) return null;
  return height;
}

/** The camera's capture size: the full layer. Browsers allow three layers from 960x540 up. */
export const CAMERA_SIZE = { width: 960, height: 540 } as const;

/**
 * The camera's simulcast layers, smallest first (`rid` names them to the server): a quarter, half
 * and the full capture size. Each has a bitrate ceiling so the small ones stay cheap; a browser
 * short of uplink bandwidth pauses the top layers itself, and the server then forwards the
 * largest one still arriving.
 */
export function simulcastEncodings(): RTCRtpEncodingParameters[] {
  return [
    { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
    { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
    { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_200_000 },
  ];
}
