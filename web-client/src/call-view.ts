// The call as both sides see it: the others' video tiles, the self view, microphone and camera
// toggles, chat, and leave (the clinician's page adds the waiting list and "End visit").
import { type CallHandlers, type ChatMessage, type Participant, VisitCall } from './call';
import { h, replaceChildren } from './dom';
import { describe, quality } from './lib/connection';
import { fillDeviceChoices, openDevice } from './devices';
import { shownHeight } from './lib/simulcast';

export interface CallView {
  call: VisitCall;
  /** The element holding the call (tiles, controls, chat). */
  root: HTMLElement;
}

export interface CallViewOptions {
  appointmentId: string;
  token: () => Promise<string | null>;
  local: MediaStream;
  /** Extra buttons beside the toggles (the clinician's "End visit"). */
  extraControls?: (call: VisitCall) => HTMLElement[];
  /** More handlers (the clinician's lobby, the pages' phase messages). */
  handlers?: CallHandlers;
  /** Called when the user presses Leave. */
  onLeave?: () => void;
  /** Staff: the patient whose live vitals the call's socket also carries. */
  watchPatient?: string;
}

function roleLabel(role: Participant['role']): string {
  return role === 'clinician' ? 'Clinician' : role === 'guest' ? 'Guest' : 'Patient';
}

/** Builds the call UI and starts the call. */
export function startCallView(opts: CallViewOptions): CallView {
  const tiles = h('div', { class: 'call-tiles', 'data-testid': 'remote-tiles' });
  const selfVideo = h('video', { class: 'self-view', 'data-testid': 'self-view', muted: true, playsinline: true, autoplay: true });
  selfVideo.muted = true;
  selfVideo.srcObject = opts.local;
  const status = h('p', { class: 'call-status', role: 'status', 'aria-live': 'polite' });
  // The user's own connection as the server measures it: a weak network is named before the
  // others have to say "you froze".
  const ownConnection = h('p', { class: 'own-connection', 'data-testid': 'own-connection', hidden: true });
  const chatLog = h('ol', { class: 'chat-log', 'aria-label': 'Chat messages', 'data-testid': 'chat-log' });
  const chatInput = h('input', { type: 'text', maxlength: 2000, 'aria-label': 'Chat message', autocomplete: 'off' });
  const tileFor = new Map<string, HTMLElement>();
  const videoFor = new Map<string, HTMLVideoElement>();
  let audioOn = opts.local.getAudioTracks().length > 0;
  let videoOn = opts.local.getVideoTracks().length > 0;
  let audioOnly = false;
  const audioOnlyNote = h('p', { class: 'audio-only-note', 'data-testid': 'audio-only-note', role: 'status', hidden: true });

  // Each tile's size goes to the server, which forwards the simulcast layer that fits it (when the
  // publisher sends layers).
  const sentHeights = new Map<string, number>();
  const sizes = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const id = (entry.target as HTMLElement).dataset.participant;
      if (!id) continue;
      const height = shownHeight(entry.contentRect.height, window.devicePixelRatio, sentHeights.get(id) ?? null);
      if (height === null) continue;
      sentHeights.set(id, height);
      call.showAt(id, height);
    }
  });
  // Spotlight: one participant large (the patient's face, say, or an interpreter's signing), the
  // others as thumbnails, which then get the server's smallest video layer.
  let spotlit: string | null = null;
  const spotlight = (id: string | null) => {
    spotlit = id;
    tiles.classList.toggle('spotlight', id !== null);
    for (const [tileId, tile] of tileFor) {
      const on = tileId === id;
      tile.classList.toggle('spotlit', on);
      const button = tile.querySelector<HTMLButtonElement>('.tile-spotlight');
      if (button) {
        button.setAttribute('aria-pressed', String(on));
        button.textContent = on ? 'Show everyone' : 'Spotlight';
      }
    }
  };
  const ensureTile = (p: Participant): HTMLElement => {
    let tile = tileFor.get(p.participant_id);
    if (!tile) {
      const video = h('video', { autoplay: true, playsinline: true, 'data-participant': p.participant_id });
      videoFor.set(p.participant_id, video);
      sizes.observe(video);
      const focus = h('button', { type: 'button', class: 'tile-spotlight button secondary small', 'aria-pressed': 'false' }, 'Spotlight');
      const id = p.participant_id;
      focus.addEventListener('click', () => spotlight(spotlit === id ? null : id));
      tile = h('figure', { class: 'call-tile', 'data-testid': 'remote-tile', 'data-role': p.role }, video, h('figcaption'), focus);
      tileFor.set(p.participant_id, tile);
      tiles.append(tile);
    }
    const caption = tile.querySelector('figcaption');
    if (caption) caption.textContent = `${p.name} (${roleLabel(p.role)})${p.audio ? '' : ' · muted'}${p.video ? '' : ' · camera off'}`;
    return tile;
  };

  const handlers: CallHandlers = {
    ...opts.handlers,
    participants: (list) => {
      const present = new Set(list.map((p) => p.participant_id));
      for (const [id, tile] of tileFor) {
        if (!present.has(id)) {
          const video = videoFor.get(id);
          if (video) sizes.unobserve(video);
          sentHeights.delete(id);
          tile.remove();
          tileFor.delete(id);
          videoFor.delete(id);
          if (spotlit === id) spotlight(null);
        }
      }
      for (const p of list) ensureTile(p);
      status.textContent = list.length === 0 ? 'Waiting for the others to join…' : `In the call with ${list.map((p) => p.name).join(', ')}.`;
      opts.handlers?.participants?.(list);
    },
    stream: (id, stream) => {
      const video = videoFor.get(id);
      if (video && video.srcObject !== stream) video.srcObject = stream;
      opts.handlers?.stream?.(id, stream);
    },
    chat: (m: ChatMessage) => {
      const at = new Date(m.at);
      chatLog.append(h('li', null, h('strong', null, m.name), ' ', h('time', { datetime: m.at }, at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })), h('p', null, m.text)));
      chatLog.scrollTop = chatLog.scrollHeight;
      opts.handlers?.chat?.(m);
    },
    media: (connected) => {
      root.dataset.media = connected ? 'connected' : 'disconnected';
      // How many media connections came up (a reconnection adds one).
      if (connected) root.dataset.mediaConnections = String(Number(root.dataset.mediaConnections ?? 0) + 1);
      opts.handlers?.media?.(connected);
    },
    audioOnly: (enabled, reason) => {
      audioOnly = enabled;
      root.dataset.audioOnly = String(enabled);
      audioOnlyNote.hidden = !enabled;
      audioOnlyNote.textContent =
        reason === 'weak_connection'
          ? 'Your connection is too weak for video: the call goes on with audio only.'
          : enabled
            ? 'Audio only: video is off both ways, which saves bandwidth.'
            : '';
      audioOnlyButton.textContent = !enabled ? 'Audio only' : reason === 'weak_connection' ? 'Try video again' : 'Turn video back on';
      audioOnlyButton.setAttribute('aria-pressed', String(enabled));
      sync();
      opts.handlers?.audioOnly?.(enabled, reason);
    },
    speakers: (dominant, speaking) => {
      const talking = new Set(speaking);
      for (const [id, tile] of tileFor) {
        tile.dataset.speaking = String(talking.has(id));
        tile.classList.toggle('dominant', id === dominant);
      }
      selfVideo.dataset.speaking = String(call.participantId !== null && talking.has(call.participantId));
      opts.handlers?.speakers?.(dominant, speaking);
    },
    stats: (list) => {
      for (const entry of list) {
        const level = quality(entry);
        if (entry.participant_id === call.participantId) {
          ownConnection.hidden = false;
          ownConnection.dataset.quality = level;
          ownConnection.textContent =
            level === 'poor' ? 'Your connection is weak: others may not see or hear you well.' : level === 'fair' ? 'Your connection is unsteady.' : 'Your connection is good.';
          continue;
        }
        const tile = tileFor.get(entry.participant_id);
        if (!tile) continue;
        tile.dataset.quality = level;
        let line = tile.querySelector<HTMLElement>('.tile-connection');
        if (!line) {
          line = h('small', { class: 'tile-connection', 'data-testid': 'tile-connection' });
          tile.append(line);
        }
        line.textContent = `${level === 'good' ? 'Good' : level === 'fair' ? 'Fair' : 'Poor'} connection: ${describe(entry)}`;
      }
      opts.handlers?.stats?.(list);
    },
  };
  const call = new VisitCall(opts.appointmentId, opts.token, opts.local, handlers);
  if (opts.watchPatient) call.watch(opts.watchPatient);

  const micButton = h('button', { type: 'button', class: 'button secondary', 'aria-pressed': 'false' }, 'Mute microphone');
  const camButton = h('button', { type: 'button', class: 'button secondary', 'aria-pressed': 'false' }, 'Turn camera off');
  const sync = () => {
    micButton.textContent = audioOn ? 'Mute microphone' : 'Unmute microphone';
    micButton.setAttribute('aria-pressed', String(!audioOn));
    camButton.textContent = videoOn ? 'Turn camera off' : 'Turn camera on';
    camButton.setAttribute('aria-pressed', String(!videoOn));
    camButton.disabled = audioOnly;
    // The others see the camera as off while this side is audio only.
    call.setMuted(audioOn, videoOn && !audioOnly);
  };
  const audioOnlyButton = h('button', { type: 'button', class: 'button secondary', 'aria-pressed': 'false', 'data-testid': 'audio-only' }, 'Audio only');
  audioOnlyButton.addEventListener('click', () => call.setAudioOnly(!audioOnly));
  micButton.addEventListener('click', () => {
    audioOn = !audioOn;
    sync();
  });
  camButton.addEventListener('click', () => {
    videoOn = !videoOn;
    sync();
  });
  // Another camera or microphone during the call (a headset plugged in, the laptop's camera
  // instead of the room's): the others get it without the call being interrupted.
  const cameraChoice = h('select', { id: 'call-camera', 'data-testid': 'call-camera' });
  const microphoneChoice = h('select', { id: 'call-microphone', 'data-testid': 'call-microphone' });
  const deviceProblem = h('p', { role: 'alert', class: 'form-alert' });
  const devices = h(
    'details',
    { class: 'call-devices', 'data-testid': 'call-devices' },
    h('summary', { class: 'button secondary' }, 'Camera and microphone'),
    h('label', { for: 'call-camera' }, 'Camera'),
    cameraChoice,
    h('label', { for: 'call-microphone' }, 'Microphone'),
    microphoneChoice,
    deviceProblem,
  );
  devices.addEventListener('toggle', () => {
    if (devices.open) void fillDeviceChoices(cameraChoice, microphoneChoice, opts.local);
  });
  const switchTo = (kind: 'audio' | 'video', select: HTMLSelectElement) => async () => {
    deviceProblem.replaceChildren();
    try {
      await call.replaceLocalTrack(await openDevice(kind, select.value));
      selfVideo.srcObject = opts.local;
    } catch (err) {
      deviceProblem.textContent = err instanceof Error ? err.message : String(err);
      void fillDeviceChoices(cameraChoice, microphoneChoice, opts.local);
    }
  };
  cameraChoice.addEventListener('change', switchTo('video', cameraChoice));
  microphoneChoice.addEventListener('change', switchTo('audio', microphoneChoice));
  const leave = h('button', { type: 'button', class: 'button danger' }, 'Leave');
  leave.addEventListener('click', () => {
    call.leave();
    opts.onLeave?.();
  });
  const chatForm = h('form', { class: 'chat-form' }, chatInput, h('button', { type: 'submit', class: 'button secondary small' }, 'Send'));
  chatForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = chatInput.value.trim();
    if (text) call.chat(text);
    chatInput.value = '';
  });

  const root = h(
    'section',
    { class: 'call', 'aria-label': 'Video call', 'data-testid': 'call' },
    status,
    ownConnection,
    h('div', { class: 'call-stage' }, tiles, selfVideo),
    audioOnlyNote,
    h('div', { class: 'call-controls' }, micButton, camButton, audioOnlyButton, devices, ...(opts.extraControls?.(call) ?? []), leave),
    h('section', { class: 'chat', 'aria-label': 'Chat' }, h('h2', { class: 'small-heading' }, 'Chat'), chatLog, chatForm),
  );
  replaceChildren(tiles);
  void call.start();
  const statsTimer = setInterval(() => void showStats(call, tileFor), 1000);
  const stop = call.stop.bind(call);
  call.stop = () => {
    clearInterval(statsTimer);
    sizes.disconnect();
    stop();
  };
  return { call, root };
}

/** Per participant: what arrives of their media (shown on their tile, kept in data attributes). */
async function showStats(call: VisitCall, tileFor: Map<string, HTMLElement>): Promise<void> {
  const pc = call.connection;
  if (!pc) return;
  const report = await pc.getStats();
  for (const tile of tileFor.values()) {
    const video = tile.querySelector('video');
    const stream = video?.srcObject instanceof MediaStream ? video.srcObject : null;
    if (!stream) continue;
    const trackIds = new Set(stream.getTracks().map((t) => t.id));
    let frames = 0;
    let height = 0;
    let level = 0;
    let lost = 0;
    let received = 0;
    let jitterMs = 0;
    report.forEach((stat: Record<string, unknown>) => {
      if (stat.type !== 'inbound-rtp' || !trackIds.has(String(stat.trackIdentifier))) return;
      lost += Number(stat.packetsLost ?? 0);
      received += Number(stat.packetsReceived ?? 0);
      if (stat.kind === 'video') {
        frames = Number(stat.framesDecoded ?? 0);
        height = Number(stat.frameHeight ?? 0);
      }
      if (stat.kind === 'audio') {
        level = Number(stat.audioLevel ?? 0);
        jitterMs = Number(stat.jitter ?? 0) * 1000;
      }
    });
    // A new connection counts from zero: so does the loudest level heard on it.
    if (tile.dataset.generation !== String(call.generation)) {
      tile.dataset.generation = String(call.generation);
      tile.dataset.maxAudioLevel = '0';
    }
    tile.dataset.framesDecoded = String(frames);
    tile.dataset.frameHeight = String(height);
    tile.dataset.audioLevel = String(level);
    tile.dataset.maxAudioLevel = String(Math.max(level, Number(tile.dataset.maxAudioLevel ?? 0)));
    let line = tile.querySelector<HTMLElement>('.tile-stats');
    if (!line) {
      line = h('small', { class: 'tile-stats' });
      tile.append(line);
    }
    const loss = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
    line.textContent = `${frames} frames · loss ${loss.toFixed(1)} % · jitter ${jitterMs.toFixed(0)} ms`;
  }
}

