// The check before the waiting room: the camera's preview, a choice of camera and microphone, a
// level meter that moves when the microphone hears something, and a short network check.
import { fillDeviceChoices, openCameraAndMicrophone } from './devices';
import { h } from './dom';
import { measureRoundTrips, median, verdict } from './lib/network-check';

export interface DeviceCheck {
  /** The card to show. */
  root: HTMLElement;
  /** The stream chosen, once a device change under way has finished. */
  stream: () => Promise<MediaStream>;
  /** Stops the meter (the stream goes on into the call). */
  stop: () => void;
}

const NETWORK_TEXT = {
  good: 'Your connection to the clinic is good',
  slow: 'Your connection to the clinic is slow: video may stutter. In the call, "Audio only" helps',
  offline: 'The clinic could not be reached. Check your internet connection, then reload this page',
} as const;

/** Opens the camera and microphone (throws with a message for people when refused) and builds the check. */
export async function startDeviceCheck(): Promise<DeviceCheck> {
  let stream = await openCameraAndMicrophone();
  const preview = h('video', { class: 'preview', autoplay: true, playsinline: true, muted: true, 'data-testid': 'preview' });
  preview.muted = true;
  preview.srcObject = stream;
  const cameras = h('select', { id: 'camera-choice', 'data-testid': 'camera-choice' });
  const microphones = h('select', { id: 'microphone-choice', 'data-testid': 'microphone-choice' });
  const meter = h('meter', { id: 'mic-level', min: 0, max: 1, value: 0, 'data-testid': 'mic-level' });
  const problem = h('div', { role: 'alert', class: 'form-alert' });
  const network = h('p', { class: 'network-check', 'data-testid': 'network-check', role: 'status' }, 'Checking your connection to the clinic…');
  let stopMeter = listen(stream, meter);

  // A device change under way: joining waits for it, so the stream that goes into the call is
  // never one whose tracks the change then stops.
  let changing: Promise<void> = Promise.resolve();
  const choose = async () => {
    problem.replaceChildren();
    try {
      const next = await openCameraAndMicrophone({ camera: cameras.value || undefined, microphone: microphones.value || undefined });
      for (const track of stream.getTracks()) track.stop();
      stream = next;
      preview.srcObject = stream;
      stopMeter();
      stopMeter = listen(stream, meter);
    } catch (err) {
      problem.replaceChildren(h('p', null, err instanceof Error ? err.message : String(err)));
    }
  };
  const change = () => {
    changing = changing.then(choose);
  };
  cameras.addEventListener('change', change);
  microphones.addEventListener('change', change);
  await fillDeviceChoices(cameras, microphones, stream);

  void measureRoundTrips('/healthz').then((samples) => {
    const rtt = median(samples);
    const result = verdict(rtt);
    network.dataset.verdict = result;
    network.textContent = rtt === null ? `${NETWORK_TEXT[result]}.` : `${NETWORK_TEXT[result]} (${Math.round(rtt)} ms to the clinic and back).`;
  });

  const root = h(
    'section',
    { class: 'card device-check', 'aria-label': 'Camera and microphone' },
    preview,
    h('div', { class: 'device-choices' }, h('label', { for: 'camera-choice' }, 'Camera'), cameras, h('label', { for: 'microphone-choice' }, 'Microphone'), microphones),
    h('label', { for: 'mic-level' }, 'Microphone level (speak to see it move)'),
    meter,
    network,
    problem,
  );
  return { root, stream: () => changing.then(() => stream), stop: () => stopMeter() };
}

/** Shows the microphone's level on `meter` (the peak of each animation frame) until the returned function is called. */
function listen(stream: MediaStream, meter: HTMLMeterElement): () => void {
  if (stream.getAudioTracks().length === 0) return () => undefined;
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame = 0;
  const tick = () => {
    analyser.getFloatTimeDomainData(samples);
    let peak = 0;
    for (const sample of samples) peak = Math.max(peak, Math.abs(sample));
    meter.value = peak;
    meter.dataset.peak = String(Math.max(peak, Number(meter.dataset.peak ?? 0)));
    frame = requestAnimationFrame(tick);
  };
  void context.resume().then(tick);
  return () => {
    cancelAnimationFrame(frame);
    void context.close();
  };
}
