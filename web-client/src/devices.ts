// Cameras and microphones: opening them with a message people understand when that fails, and the
// choice lists of the device check and of the call's "Camera and microphone" menu.
import { h, replaceChildren } from './dom';
import { CAMERA_SIZE } from './lib/simulcast';

/** The camera's constraints: the full simulcast layer's size, on the chosen device if any. */
function cameraConstraints(deviceId?: string): MediaTrackConstraints {
  return { width: { ideal: CAMERA_SIZE.width }, height: { ideal: CAMERA_SIZE.height }, ...(deviceId ? { deviceId: { exact: deviceId } } : {}) };
}

/** Why the browser refused, in words for the person at the screen. */
function refusal(err: unknown): Error {
  const name = err instanceof DOMException ? err.name : '';
  if (name === 'NotAllowedError') return new Error('Allow this page to use your camera and microphone (see the icon in the address bar), then try again.');
  if (name === 'NotFoundError') return new Error('No camera or microphone was found. Connect one and try again.');
  return new Error('Your camera or microphone could not be started. Close other programs using them and try again.');
}

/** Asks for the camera and microphone (the chosen ones, if given); a clear message when refused or missing. */
export async function openCameraAndMicrophone(choice: { camera?: string; microphone?: string } = {}): Promise<MediaStream> {
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: choice.microphone ? { deviceId: { exact: choice.microphone } } : true,
      video: cameraConstraints(choice.camera),
    });
  } catch (err) {
    throw refusal(err);
  }
}

/** Opens one camera or microphone on its own (a change of device during the call). */
export async function openDevice(kind: 'audio' | 'video', deviceId: string): Promise<MediaStreamTrack> {
  try {
    const stream = await navigator.mediaDevices.getUserMedia(
      kind === 'audio' ? { audio: { deviceId: { exact: deviceId } } } : { video: cameraConstraints(deviceId) },
    );
    const [track] = stream.getTracks();
    if (!track) throw new DOMException('no track', 'NotFoundError');
    return track;
  } catch (err) {
    throw refusal(err);
  }
}

/** Fills the two choice lists with this machine's cameras and microphones, those `stream` uses selected. */
export async function fillDeviceChoices(cameras: HTMLSelectElement, microphones: HTMLSelectElement, stream: MediaStream): Promise<void> {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const inUse = (tracks: MediaStreamTrack[]) => tracks[0]?.getSettings().deviceId;
  const options = (kind: MediaDeviceKind, current: string | undefined, noun: string) =>
    devices.filter((d) => d.kind === kind).map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${noun} ${i + 1}`));
  replaceChildren(cameras, options('videoinput', inUse(stream.getVideoTracks()), 'Camera'));
  replaceChildren(microphones, options('audioinput', inUse(stream.getAudioTracks()), 'Microphone'));
}
