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
