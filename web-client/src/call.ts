// A video visit from the browser's side (docs/signaling.md, "Video visits"): one WebSocket at
// /ws, hello with the token, join the appointment, wait to be admitted, then one
// RTCPeerConnection to the SFU. The browser offers once, with its camera and microphone; after
// that only the server offers (to add or stop the others' tracks) and the browser answers, so
// the two sides never offer at the same time. Each remote participant's audio and video arrive
// in one MediaStream whose id is their participant id.
import { feedUrl, FEED_VERSION } from './feed';
import type { ConnectionStats } from './lib/connection';
import { simulcastEncodings } from './lib/simulcast';

export type CallPhase = 'connecting' | 'waiting' | 'in_call' | 'reconnecting' | 'ended' | 'denied' | 'removed' | 'replaced' | 'failed';

/** How long a dropped socket is retried: the server keeps an admitted seat this long (`visits.rejoin_grace_secs`). */
const RECONNECT_FOR_MS = 120_000;

export interface Participant {
  participant_id: string;
  role: 'clinician' | 'patient' | 'guest';
  name: string;
  audio: boolean;
  video: boolean;
}

export interface ChatMessage {
  participant_id: string;
  name: string;
  text: string;
  at: string;
}

export interface CallHandlers {
  phase?: (phase: CallPhase, detail?: string) => void;
  /** Clinicians: who waits to be admitted, longest waiting first. */
  lobby?: (waiting: Participant[]) => void;
  /** Everyone else in the call now. */
  participants?: (participants: Participant[]) => void;
  /** A participant's media arrived (or changed). */
  stream?: (participantId: string, stream: MediaStream) => void;
  chat?: (message: ChatMessage) => void;
  /** The media connection's state (ICE and DTLS). */
  media?: (connected: boolean) => void;
  /** Who speaks: the dominant speaker (whose tile is highlighted) and everyone speaking, by participant id. */
  speakers?: (dominant: string | null, speaking: string[]) => void;
  /** Connections as the server measures them: everyone's for a clinician, one's own otherwise. */
  stats?: (stats: ConnectionStats[]) => void;
  /** Audio-only mode changed: no video is received or sent (chosen, or a weak connection). */
  audioOnly?: (enabled: boolean, reason: 'chosen' | 'weak_connection' | null) => void;
  error?: (code: string, message: string, refused?: string) => void;
  /** Live-feed messages (snapshot, sample, news2, alert) of the watched patient. */
  feed?: (message: { type: string; [key: string]: unknown }) => void;
}

interface ServerMessage {
  type: string;
  [key: string]: unknown;
}

/** Codes after which the socket will not be let into the visit by retrying. */
const FINAL_CODES = new Set(['forbidden', 'not_found', 'visit_over', 'not_a_video_visit', 'consent_required', 'unauthenticated']);

export class VisitCall {
  private ws: WebSocket | null = null;
  private pc: RTCPeerConnection | null = null;
  private others = new Map<string, Participant>();
  private streams = new Map<string, MediaStream>();
  private signalling: Promise<void> = Promise.resolve();
  private stopped = false;
  private _phase: CallPhase = 'connecting';
  private watching: string | null = null;
  private iceServers: RTCIceServer[] = [];
  /** The user asked for audio only (asked again of each new connection). */
  private audioOnlyWanted = false;
  /** Audio-only mode is on, as the server last said. */
  private audioOnlyOn = false;
  /** While the socket is being reconnected: until when to keep trying, the attempt, its timer. */
  private reconnectUntil: number | null = null;
  private reconnectAttempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  /** The height each participant's video is shown at (asked again of each new connection). */
  private shownHeights = new Map<string, number>();
  /** The video sender whose camera is off the wire in audio-only mode. */
  private pausedVideo: RTCRtpSender | null = null;
  participantId: string | null = null;

  constructor(
    private readonly appointmentId: string,
    private readonly token: () => Promise<string | null>,
    private readonly local: MediaStream,
    private readonly handlers: CallHandlers,
  ) {}

  get phase(): CallPhase {
    return this._phase;
  }

  /** The peer connection (for statistics). */
  get connection(): RTCPeerConnection | null {
    return this.pc;
  }

  /** Counts the peer connections opened (statistics start again with each). */
  generation = 0;

  async start(): Promise<void> {
    const token = await this.token();
    if (!token) {
      this.setPhase('failed', 'unauthenticated');
      return;
    }
    const ws = new WebSocket(feedUrl());
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', v: FEED_VERSION, token }));
    ws.onmessage = (event) => {
      let message: ServerMessage;
      try {
        message = JSON.parse(String(event.data)) as ServerMessage;
      } catch {
        return;
      }
      this.onMessage(message);
    };
    window.addEventListener('online', this.networkChanged);
    ws.onclose = (event) => {
      if (this.stopped || this.ws !== ws) return;
      this.closeMedia();
      if (this._phase === 'in_call' || this._phase === 'waiting' || this._phase === 'reconnecting') {
        this.reconnect(event.reason || 'connection lost');
      } else if (this._phase === 'connecting') {
        this.setPhase('failed', event.reason || 'connection lost');
      }
    };
  }

  /**
   * The socket dropped in the call or the waiting room (a network change, a flaky connection):
   * open it again, 1, 2, 4… up to 10 s apart, for as long as the server keeps the seat. Back in
   * time, the call resumes without being admitted again.
   */
  private reconnect(reason: string): void {
    const now = Date.now();
    this.reconnectUntil ??= now + RECONNECT_FOR_MS;
    if (now > this.reconnectUntil) {
      this.setPhase('failed', reason);
      return;
    }
    this.setPhase('reconnecting', reason);
    const delay = Math.min(10_000, 1000 * 2 ** this.reconnectAttempt);
    this.reconnectAttempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.start();
    }, delay);
  }

  /** Leaves the visit (the seat stays admitted for the rejoin grace period). */
  leave(): void {
    this.send({ type: 'leave' });
    this.stop();
  }

  stop(): void {
    this.stopped = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    window.removeEventListener('online', this.networkChanged);
    this.closeMedia();
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState <= WebSocket.OPEN) ws.close(1000, 'bye');
  }

  /** Staff: also receive this patient's live vitals and alerts on the call's socket. */
  watch(patientId: string): void {
    this.watching = patientId;
  }

  /** Staff: acknowledges an alert of the watched patient. */
  ackAlert(alertId: string): void {
    this.send({ type: 'ack_alert', alert_id: alertId });
  }

  admit(participantId: string): void {
    this.send({ type: 'admit', participant_id: participantId });
  }

  deny(participantId: string): void {
    this.send({ type: 'deny', participant_id: participantId });
  }

  remove(participantId: string): void {
    this.send({ type: 'remove', participant_id: participantId });
  }

  endVisit(): void {
    this.send({ type: 'end_visit' });
  }

  /** Asks for audio only (no video either way) or for video again; the server confirms. */
  setAudioOnly(enabled: boolean): void {
    this.audioOnlyWanted = enabled;
    this.send({ type: 'audio_only', enabled });
  }

  /** Tells the server how tall `participantId`'s video is shown (device pixels): it sends the layer that fits. */
  showAt(participantId: string, height: number): void {
    this.shownHeights.set(participantId, height);
    this.send({ type: 'preferred_layer', participant_id: participantId, max_height: height });
  }

  chat(text: string): void {
    this.send({ type: 'chat', text });
  }

  /**
   * Puts `track` (another camera or microphone) in place of the local track of its kind: the others
   * get it at once, with no renegotiation, and a reconnection sends it. It keeps the old track's
   * on/off state (a muted microphone stays muted), and a camera paused for audio only stays paused.
   * The old track is stopped.
   */
  async replaceLocalTrack(track: MediaStreamTrack): Promise<void> {
    const video = track.kind === 'video';
    const old = (video ? this.local.getVideoTracks() : this.local.getAudioTracks())[0] ?? null;
    if (old) track.enabled = old.enabled;
    const sender = this.pc?.getSenders().find((s) => (old !== null && s.track === old) || (video && s.track === null && this.pausedVideo === s)) ?? null;
    if (old) this.local.removeTrack(old);
    this.local.addTrack(track);
    if (sender && sender !== this.pausedVideo) await sender.replaceTrack(track);
    old?.stop();
  }

  /** Turns the microphone or camera on or off, and tells the others. */
  setMuted(audio: boolean, video: boolean): void {
    for (const track of this.local.getAudioTracks()) track.enabled = audio;
    for (const track of this.local.getVideoTracks()) track.enabled = video;
    this.send({ type: 'mute', audio, video });
  }

  private send(message: unknown): void {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  private setPhase(phase: CallPhase, detail?: string): void {
    this._phase = phase;
    this.handlers.phase?.(phase, detail);
  }

  private emitParticipants(): void {
    this.handlers.participants?.([...this.others.values()]);
  }

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case 'welcome':
        if (this.watching) this.send({ type: 'subscribe', patients: [this.watching] });
        this.send({ type: 'join', appointment_id: this.appointmentId });
        break;
      case 'snapshot':
      case 'sample':
      case 'news2':
      case 'alert':
        this.handlers.feed?.(message);
        break;
      case 'ice_servers':
        this.iceServers = (message.ice_servers as RTCIceServer[]) ?? [];
        break;
      case 'joined':
        this.participantId = message.participant_id as string;
        this.reconnectUntil = null;
        this.reconnectAttempt = 0;
        if (message.state === 'waiting') this.setPhase('waiting');
        break;
      case 'admitted':
        this.others.clear();
        for (const p of message.participants as Participant[]) this.others.set(p.participant_id, p);
        this.emitParticipants();
        this.setPhase('in_call');
        void this.openMedia();
        break;
      case 'participant_joined': {
        const p = message.participant as Participant;
        this.others.set(p.participant_id, p);
        this.emitParticipants();
        break;
      }
      case 'participant_left':
        this.shownHeights.delete(message.participant_id as string);
        this.others.delete(message.participant_id as string);
        this.streams.delete(message.participant_id as string);
        this.emitParticipants();
        break;
      case 'mute': {
        const p = this.others.get(message.participant_id as string);
        if (p) {
          p.audio = message.audio as boolean;
          p.video = message.video as boolean;
          this.emitParticipants();
        }
        break;
      }
      case 'lobby':
        this.handlers.lobby?.(message.waiting as Participant[]);
        break;
      case 'chat':
        this.handlers.chat?.(message as unknown as ChatMessage);
        break;
      case 'answer':
        this.serialise(async (pc) => pc.setRemoteDescription({ type: 'answer', sdp: message.sdp as string }));
        break;
      case 'offer':
        this.serialise(async (pc) => {
          await pc.setRemoteDescription({ type: 'offer', sdp: message.sdp as string });
          await pc.setLocalDescription(await pc.createAnswer());
          this.send({ type: 'answer', sdp: pc.localDescription?.sdp });
        });
        break;
      case 'media_connected':
        this.handlers.media?.(true);
        if (this.audioOnlyWanted) {
          this.send({ type: 'audio_only', enabled: true });
        } else if (this.audioOnlyOn) {
          // A new connection starts with video (a mode the server forced on the old one is gone).
          this.audioOnlyOn = false;
          this.handlers.audioOnly?.(false, null);
        }
        for (const [id, height] of this.shownHeights) this.send({ type: 'preferred_layer', participant_id: id, max_height: height });
        break;
      case 'audio_only': {
        const enabled = message.enabled === true;
        this.audioOnlyOn = enabled;
        if (message.reason === 'weak_connection') this.audioOnlyWanted = false;
        void this.sendVideo(!enabled);
        this.handlers.audioOnly?.(enabled, enabled ? ((message.reason as 'chosen' | 'weak_connection') ?? 'chosen') : null);
        break;
      }
      case 'speakers':
        this.handlers.speakers?.((message.dominant as string | null) ?? null, (message.speaking as string[]) ?? []);
        break;
      case 'stats':
        this.handlers.stats?.((message.participants as ConnectionStats[]) ?? []);
        break;
      case 'media_disconnected':
        this.handlers.media?.(false);
        // The connection failed: offer a new one (the server replaces the old).
        if (this._phase === 'in_call') void this.openMedia();
        break;
      case 'denied':
      case 'removed':
      case 'replaced':
        this.closeMedia();
        this.setPhase(message.type);
        this.stop();
        break;
      case 'visit_ended':
        this.closeMedia();
        this.setPhase('ended');
        this.stop();
        break;
      case 'error': {
        const code = message.code as string;
        this.handlers.error?.(code, message.message as string, message.refused as string | undefined);
        if (code === 'visit_over' && this._phase === 'reconnecting') {
          // The visit ended while this side was cut off.
          this.closeMedia();
          this.setPhase('ended');
          this.stop();
        } else if (FINAL_CODES.has(code) && this._phase !== 'in_call') {
          this.setPhase('failed', code);
          this.stop();
        }
        break;
      }
      default:
        break;
    }
  }

  /** Runs signalling steps one after another (an offer arriving mid-answer waits its turn). */
  private serialise(step: (pc: RTCPeerConnection) => Promise<void>): void {
    this.signalling = this.signalling
      .then(async () => {
        if (this.pc) await step(this.pc);
      })
      .catch((err: unknown) => this.handlers.error?.('negotiation_failed', String(err)));
  }

  private async openMedia(): Promise<void> {
    this.closeMedia();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require', iceServers: this.iceServers });
    this.pc = pc;
    this.generation += 1;
    // The microphone, and the camera as simulcast layers: the server gives each participant the
    // layer that fits the tile they show it in and their bandwidth.
    for (const track of this.local.getAudioTracks()) pc.addTrack(track, this.local);
    for (const track of this.local.getVideoTracks()) {
      pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.local], sendEncodings: simulcastEncodings() });
    }
    pc.onicecandidate = (event) => {
      if (event.candidate) this.send({ type: 'candidate', candidate: event.candidate.toJSON() });
      else this.send({ type: 'end_of_candidates' });
    };
    pc.ontrack = (event) => {
      const stream = event.streams[0];
      if (!stream) return;
      this.streams.set(stream.id, stream);
      this.handlers.stream?.(stream.id, stream);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState !== 'failed' || pc !== this.pc) return;
      this.handlers.media?.(false);
      // ICE gave up (the network changed under it): a new connection, which the server puts in
      // the old one's place, rather than waiting for the server to notice.
      if (this._phase === 'in_call') void this.openMedia();
    };
    this.serialise(async () => {
      await pc.setLocalDescription(await pc.createOffer());
      this.send({ type: 'offer', sdp: pc.localDescription?.sdp });
    });
  }

  /**
   * The device came back online (a new Wi-Fi, mobile data): its old address is likely gone, so
   * the call reconnects at once over whatever network it has now.
   */
  private readonly networkChanged = (): void => {
    if (this.stopped) return;
    if (this._phase === 'reconnecting' && this.reconnectTimer !== null) {
      // Online again: no need to wait out the back-off.
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      void this.start();
    } else if (this._phase === 'in_call') {
      void this.openMedia();
    }
  };

  /** Starts or stops sending the camera on the connection (stopped, it costs no bandwidth at all). */
  private async sendVideo(on: boolean): Promise<void> {
    const pc = this.pc;
    const camera = this.local.getVideoTracks()[0] ?? null;
    if (!pc || !camera) return;
    const sender = pc.getSenders().find((s) => s.track === camera || (s.track === null && this.pausedVideo === s));
    if (!sender) return;
    this.pausedVideo = on ? null : sender;
    await sender.replaceTrack(on ? camera : null);
  }

  private closeMedia(): void {
    const pc = this.pc;
    this.pc = null;
    this.pausedVideo = null;
    if (pc) pc.close();
  }
}
