// The clinician's live feed on /ws (docs/signaling.md, protocol version 1): hello with the
// access token, subscribe to patients, then a snapshot, samples and alert events. Reconnects
// with backoff, re-sending hello with the current (possibly refreshed) token and
// since_seq = the last alert sequence seen, so no alert event is missed; pings every 25 s.
import { endStaffSession, freshStaffAccessToken, refreshStaffTokens } from './api';
import { backoffDelay } from './lib/vitals';
import type { Alert, CurrentValue } from './types';

export const FEED_VERSION = 1;
const PING_MS = 25_000;
/** No message at all (pongs included) for this long: the connection is taken as dead. */
const SILENCE_MS = 60_000;
const HELLO_WAIT_MS = 15_000;

export type FeedState = 'connecting' | 'connected' | 'reconnecting' | 'closed';

export interface SnapshotMessage {
  type: 'snapshot';
  seq: number;
  patients: { patient_id: string; latest: CurrentValue[] }[];
  alerts: Alert[];
}

export interface SampleMessage {
  type: 'sample';
  patient_id: string;
  metric: string;
  value: number;
  unit: string;
  time: string;
}

export interface News2Message {
  type: 'news2';
  patient_id: string;
  total: number;
  band: 'low' | 'low_medium' | 'medium' | 'high';
  missing: string[];
  spo2_scale: 1 | 2;
}

export interface AlertMessage {
  type: 'alert';
  seq: number;
  event: 'opened' | 'escalated' | 'acknowledged' | 'resolved' | string;
  alert: Alert;
}

export interface FeedError {
  type: 'error';
  code: string;
  message: string;
  /** Set when an `ack_alert` was refused: the alert it named. */
  alert_id?: string;
}

export interface FeedHandlers {
  /** Connection state changes; `retryInMs` is set while waiting to reconnect. */
  state?: (state: FeedState, info: { attempt: number; retryInMs?: number; reason?: string }) => void;
  /** The state of the subscribed patients; `resumed` when it follows a reconnect. */
  snapshot?: (m: SnapshotMessage, resumed: boolean) => void;
  sample?: (m: SampleMessage) => void;
  /** A patient's NEWS2 changed (scored on stored readings). */
  news2?: (m: News2Message) => void;
  /** An alert transition (live, or replayed after a reconnect with the alert's current state). */
  alert?: (m: AlertMessage, replayed: boolean) => void;
  /** An error message that does not close the feed (forbidden, not_open, …). */
  error?: (m: FeedError) => void;
}

export interface FeedOptions {
  url?: string;
  /** For tests: the WebSocket constructor. */
  WebSocketImpl?: typeof WebSocket;
}

export function feedUrl(loc: Pick<Location, 'protocol' | 'host'> = location): string {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

export class LiveFeed {
  private ws: WebSocket | null = null;
  private stopped = false;
  private attempt = 0;
  private everConnected = false;
  private lastSeq: number | null = null;
  private snapshotSeq: number | null = null;
  private lastMessageAt = 0;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private helloTimer: ReturnType<typeof setTimeout> | null = null;
  private authFailures = 0;
  private closeReason: string | null = null;
  /** Whether the current connection follows an earlier one (its snapshot is a resumption). */
  private resumed = false;
  private _state: FeedState = 'connecting';
  private readonly url: string;
  private readonly WS: typeof WebSocket;
  private readonly onOnline = () => {
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      void this.connect();
    }
  };

  constructor(
    private readonly patients: string[],
    private readonly handlers: FeedHandlers,
    opts: FeedOptions = {},
  ) {
    this.url = opts.url ?? feedUrl();
    this.WS = opts.WebSocketImpl ?? WebSocket;
  }

  get state(): FeedState {
    return this._state;
  }

  /** True when messages sent now reach the server (authenticated and subscribed). */
  get connected(): boolean {
    return this._state === 'connected' && this.ws?.readyState === this.WS.OPEN;
  }

  start(): void {
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    void this.connect();
  }

  stop(): void {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    this.clearTimers();
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      detach(ws);
      try {
        ws.close(1000, 'bye');
      } catch {
        // already closed
      }
    }
    this.setState('closed', {});
  }

  /** Sends ack_alert; false when the feed is down (the caller then uses the REST call). */
  ackAlert(alertId: string): boolean {
    return this.send({ type: 'ack_alert', alert_id: alertId });
  }

  private send(message: unknown): boolean {
    if (!this.connected || !this.ws) return false;
    try {
      this.ws.send(JSON.stringify(message));
      return true;
    } catch {
      return false;
    }
  }

  private setState(state: FeedState, info: { retryInMs?: number; reason?: string }): void {
    this._state = state;
    this.handlers.state?.(state, { attempt: this.attempt, ...info });
  }

  private clearTimers(): void {
    if (this.pingTimer !== null) clearInterval(this.pingTimer);
    if (this.helloTimer !== null) clearTimeout(this.helloTimer);
    this.pingTimer = null;
    this.helloTimer = null;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    this.retryTimer = null;
    this.setState(this.everConnected || this.attempt > 0 ? 'reconnecting' : 'connecting', {});
    const token = await freshStaffAccessToken();
    if (this.stopped) return;
    if (!token) {
      this.stop();
      endStaffSession();
      return;
    }
    let ws: WebSocket;
    try {
      ws = new this.WS(this.url);
    } catch {
      this.scheduleReconnect('the feed address was refused');
      return;
    }
    this.ws = ws;
    this.closeReason = null;
    ws.onopen = () => {
      this.lastMessageAt = Date.now();
      ws.send(JSON.stringify({ type: 'hello', v: FEED_VERSION, token }));
      // No welcome (or refusal) in time: try again rather than hang in "connecting".
      this.helloTimer = setTimeout(() => this.drop(ws, 'no answer to hello'), HELLO_WAIT_MS);
    };
    ws.onmessage = (ev: MessageEvent) => {
      this.lastMessageAt = Date.now();
      let m: { type?: unknown } & Record<string, unknown>;
      try {
        m = JSON.parse(String(ev.data)) as typeof m;
      } catch {
        return;
      }
      this.onMessage(ws, m);
    };
    ws.onerror = () => {
      // a close event follows
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clearTimers();
      void this.afterClose(this.closeReason ?? (ev.reason || null));
    };
  }

  private onMessage(ws: WebSocket, m: { type?: unknown } & Record<string, unknown>): void {
    switch (m.type) {
      case 'welcome': {
        if (this.helloTimer !== null) clearTimeout(this.helloTimer);
        this.helloTimer = null;
        this.authFailures = 0;
        const sub: Record<string, unknown> = { type: 'subscribe', patients: this.patients };
        if (this.lastSeq !== null) sub['since_seq'] = this.lastSeq;
        ws.send(JSON.stringify(sub));
        this.pingTimer = setInterval(() => this.ping(ws), PING_MS);
        this.attempt = 0;
        const resumed = this.everConnected;
        this.everConnected = true;
        this.resumed = resumed;
        this.setState('connected', {});
        break;
      }
      case 'snapshot': {
        const snap = m as unknown as SnapshotMessage;
        this.snapshotSeq = snap.seq;
        this.bumpSeq(snap.seq);
        this.handlers.snapshot?.(snap, this.resumed);
        break;
      }
      case 'sample':
        this.handlers.sample?.(m as unknown as SampleMessage);
        break;
      case 'news2':
        this.handlers.news2?.(m as unknown as News2Message);
        break;
      case 'alert': {
        const a = m as unknown as AlertMessage;
        const replayed = this.snapshotSeq !== null && a.seq <= this.snapshotSeq;
        this.bumpSeq(a.seq);
        this.handlers.alert?.(a, replayed);
        break;
      }
      case 'pong':
        break;
      case 'error': {
        const e = m as unknown as FeedError;
        // Codes that close the socket: remember why, the close event decides what next.
        if (['unauthenticated', 'hello_required', 'unsupported_version', 'too_slow', 'replay_failed', 'send_failed', 'shutting_down'].includes(e.code)) {
          this.closeReason = e.code;
        } else {
          this.handlers.error?.(e);
        }
        break;
      }
      default:
        break;
    }
  }

  private bumpSeq(seq: unknown): void {
    if (typeof seq === 'number' && Number.isFinite(seq)) this.lastSeq = this.lastSeq === null ? seq : Math.max(this.lastSeq, seq);
  }

  private ping(ws: WebSocket): void {
    if (Date.now() - this.lastMessageAt > SILENCE_MS) {
      this.drop(ws, 'no answer from the server');
      return;
    }
    try {
      ws.send(JSON.stringify({ type: 'ping' }));
    } catch {
      this.drop(ws, 'the connection failed');
    }
  }

  /** Gives up on a socket without waiting for its close event (a dead link may take long). */
  private drop(ws: WebSocket, reason: string): void {
    if (this.ws !== ws) return;
    this.ws = null;
    this.clearTimers();
    detach(ws);
    try {
      ws.close();
    } catch {
      // ignore
    }
    void this.afterClose(reason);
  }

  private async afterClose(reason: string | null): Promise<void> {
    if (this.stopped) return;
    if (reason === 'unsupported_version') {
      this.stopped = true;
      this.setState('closed', { reason: 'This page is out of date: reload it to see live data.' });
      return;
    }
    if (reason === 'unauthenticated') {
      // The access token expired or was revoked: refresh once, else the session is over.
      this.authFailures += 1;
      const renewed = this.authFailures <= 2 && (await refreshStaffTokens());
      if (this.stopped) return;
      if (!renewed) {
        this.stop();
        endStaffSession();
        return;
      }
      this.attempt = 0;
      void this.connect();
      return;
    }
    this.scheduleReconnect(reason ?? undefined);
  }

  private scheduleReconnect(reason?: string): void {
    if (this.stopped) return;
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.setState('reconnecting', { retryInMs: delay, ...(reason ? { reason } : {}) });
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }
}

function detach(ws: WebSocket): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onerror = null;
  ws.onclose = null;
}
