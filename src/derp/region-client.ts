/**
 * `RegionClient`: one reconnecting DERP connection to one region (tailscale-protocols.md §2.1, §2.7; after
 * Tailscale's `derphttp.Client` + magicsock's per-region reader).
 *
 *   idle ──start()──▶ connecting ──ok──▶ connected ──link lost──▶ connecting …
 *                         │  ▲                                         (first retry at once, unless the link
 *                     fail│  │backoff over                              lived < 10 s: then after the min backoff)
 *                         ▼  │
 *                       backoff        close() from any state ──▶ closed
 *
 * - Dialling: the region's DERP nodes (STUN-only nodes skipped) in map order; each node but the last gets 1.5 s
 *   (Tailscale's dialNodeTimeout), the last one whatever is left of the 10 s connect budget. Tailscale's 1.5 s
 *   covers the TCP dial only; ours covers the whole connect (TCP, TLS, upgrade, DERP login), so a single-node
 *   region on a slow path is not failed after 1.5 s — it gets the whole budget.
 * - Reconnect: `p-retry` with exponential backoff (×2, randomised ×1–2) from 250 ms, capped at 5 s between attempts
 *   (Tailscale's 5 s backoff cap for DERP reconnects); a fresh backoff sequence after every successful connection.
 * - Sends: while connected, straight to the connection. While a connect attempt is in flight, up to 32 packets
 *   wait (Tailscale's derpWriteQueueDepth) and go out on connect; when the attempt fails they are dropped. In
 *   backoff, idle or closed, sends are dropped. Every drop returns false and is counted — nothing is thrown.
 * - Server Pings are answered by DerpConn; `ping()` sends our own Ping and resolves with the RTT of its Pong.
 * - NotePreferred is re-sent after every reconnect.
 *
 * State changes are published on `channels.derpClient` as `{ region, state, error? }` and emitted as `'state'`.
 * Backoff delays use p-retry's real timers; everything else (ping timeouts, state times) uses the injected clock.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import pRetry, { AbortError as PRetryAbortError } from 'p-retry';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import type { AddrPort } from '../internal/addr.js';
import { bytesEqual } from '../internal/bytes.js';
import { type Clock, type RandomSource, systemClock, systemRandom } from '../internal/clock.js';
import { channels, Counters, publish } from '../internal/diagnostics.js';
import { PublicKey, type PrivateKey } from '../key/keys.js';
import { DerpConn, type DerpConnectOptions } from './conn.js';
import { DERP } from './constants.js';
import { derpNodes, derpNodeUrl, type DerpNode, type DerpRegion } from './derp-map.js';
import type { Frame } from './frame.js';
import { nodeTlsOptions } from './node-dial.js';

/** Client-side DERP timings and sizes not in the wire table (constants.ts), each with its reason. */
export const DERP_CLIENT = {
  /** First reconnect backoff: quick enough that a restarted server is found within a second. */
  BACKOFF_MIN_MS: 250,
  /** Cap between reconnect attempts (Tailscale's DERP reconnect backoff maximum). */
  BACKOFF_MAX_MS: 5_000,
  /** Backoff growth per failed attempt. */
  BACKOFF_FACTOR: 2,
  /** A link that dies sooner than this after connecting is "flapping": wait the min backoff before redialling. */
  FLAP_MS: 10_000,
  /** Packets held while a connect attempt is in flight (Tailscale's derpWriteQueueDepth). */
  CONNECTING_QUEUE_DEPTH: 32,
  /** Default wait for a DERP-level Pong (the disco ping timeout, tailscale-protocols.md §3.7). */
  PING_TIMEOUT_MS: 5_000,
} as const;

export type RegionState = 'idle' | 'connecting' | 'connected' | 'backoff' | 'closed';

/** Counter names of a region client. */
export type RegionCounter =
  | 'connects'
  | 'connectFailures'
  | 'disconnects'
  | 'packetsIn'
  | 'packetsOut'
  | 'dropDisconnected'
  | 'dropQueueFull'
  | 'dropConnectFailed'
  | 'dropTooLarge'
  | 'dropConn'
  | 'pings'
  | 'pingTimeouts'
  | 'forcedReconnects';

/** A snapshot of one region connection. Times are the injected clock's milliseconds. */
export interface RegionStatus {
  readonly regionId: number;
  readonly regionCode: string;
  readonly state: RegionState;
  readonly connected: boolean;
  /** When the current state began. */
  readonly since: number;
  /** The node and URL of the current connection. */
  readonly node: string | undefined;
  readonly url: string | undefined;
  readonly serverKey: PublicKey | undefined;
  readonly localAddress: AddrPort | undefined;
  /** RTT of the last answered DERP Ping (ms). */
  readonly latencyMs: number | undefined;
  /** Last time any frame arrived from the server. */
  readonly lastActivity: number | undefined;
  /** Why the last connection or attempt failed. */
  readonly lastError: string | undefined;
  /** The server's Health message (empty string clears it). */
  readonly health: string | undefined;
  readonly preferred: boolean;
  readonly counters: Record<string, number>;
}

/** `DerpConn.connect`'s signature, injectable for tests. */
export type DerpConnectFn = (opts: DerpConnectOptions) => Promise<DerpConn>;

export interface RegionClientOptions {
  region: DerpRegion;
  privateKey: PrivateKey;
  clock?: Clock;
  rng?: RandomSource;
  /** Send NotePreferred(true) on every connect. */
  preferred?: boolean;
  /** Per-node dial budget for all but the last node (default 1.5 s). */
  dialNodeTimeoutMs?: number;
  /** Whole connect budget across the region's nodes (default 10 s). */
  connectTimeoutMs?: number;
  /** Reconnect backoff (default 250 ms → 5 s, ×2, randomised). */
  backoff?: { minMs?: number; maxMs?: number; factor?: number; randomize?: boolean };
  /** Extra TLS options for every node (e.g. a test CA). */
  tls?: ConnectionOptions;
  /** Closes the client when it fires. */
  signal?: AbortSignal;
  /** Replaces DerpConn.connect (tests). */
  connect?: DerpConnectFn;
}

/** Events of a RegionClient. Packet bytes are copies the listener may keep. */
export interface RegionClientEvents {
  packet: [src: PublicKey, packet: Uint8Array];
  peerGone: [key: PublicKey, reason: number];
  state: [status: RegionStatus];
}

interface PendingPing {
  readonly data: Uint8Array;
  readonly sentAt: number;
  resolve(ms: number): void;
  reject(err: unknown): void;
}

/** One reconnecting connection to one DERP region. */
export class RegionClient extends EventEmitter<RegionClientEvents> {
  readonly region: DerpRegion;
  readonly counters = new Counters<RegionCounter>();
  private readonly privateKey: PrivateKey;
  private readonly clock: Clock;
  private readonly rng: RandomSource;
  private readonly opts: RegionClientOptions;
  private readonly connectFn: DerpConnectFn;
  private readonly ac = new AbortController();
  private stateName: RegionState = 'idle';
  private stateSince: number;
  private conn: DerpConn | undefined;
  private connNode: DerpNode | undefined;
  private queue: { dst: PublicKey; packet: Uint8Array }[] = [];
  private preferredFlag: boolean;
  private latency: number | undefined;
  private activity: number | undefined;
  private lastErr: string | undefined;
  private healthText: string | undefined;
  private pings: PendingPing[] = [];
  private connectWaiters: (() => void)[] = [];
  private lastSrc: PublicKey | undefined;
  private loop: Promise<void> | undefined;

  constructor(opts: RegionClientOptions) {
    super();
    if (derpNodes(opts.region).length === 0)
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `DERP region ${opts.region.regionId} has no DERP (non-STUN-only) node`,
      );
    this.opts = opts;
    this.region = opts.region;
    this.privateKey = opts.privateKey;
    this.clock = opts.clock ?? systemClock;
    this.rng = opts.rng ?? systemRandom;
    this.connectFn = opts.connect ?? ((o) => DerpConn.connect(o));
    this.preferredFlag = opts.preferred ?? false;
    this.stateSince = this.clock.now();
    if (opts.signal) {
      if (opts.signal.aborted) this.close();
      else opts.signal.addEventListener('abort', () => this.close(), { once: true });
    }
  }

  get state(): RegionState {
    return this.stateName;
  }

  get connected(): boolean {
    return this.stateName === 'connected';
  }

  /** Last time any frame arrived from this region's server (for home hysteresis), or undefined. */
  get lastActivity(): number | undefined {
    return this.activity;
  }

  /** Starts connecting (idempotent). */
  start(): void {
    if (this.loop || this.stateName === 'closed') return;
    this.loop = this.run().catch(() => undefined);
  }

  /** Sets whether this region is our home; sent now if connected and again after every reconnect. */
  notePreferred(preferred: boolean): void {
    this.preferredFlag = preferred;
    this.conn?.notePreferred(preferred);
  }

  /**
   * Sends `packet` to `dst` through this region. Returns false (and counts why) when it was dropped: not
   * connected and no attempt in flight, queue full, server rate limit, or too large. Never throws.
   */
  send(dst: PublicKey, packet: Uint8Array): boolean {
    if (packet.length > DERP.MAX_PACKET_SIZE) return this.drop('dropTooLarge');
    if (this.conn && this.stateName === 'connected') {
      if (!this.conn.sendPacket(dst, packet)) return this.drop('dropConn');
      this.counters.inc('packetsOut');
      return true;
    }
    if (this.stateName === 'connecting') {
      if (this.queue.length >= DERP_CLIENT.CONNECTING_QUEUE_DEPTH) return this.drop('dropQueueFull');
      this.queue.push({ dst, packet: packet.slice() });
      return true;
    }
    return this.drop('dropDisconnected');
  }

  /**
   * DERP-level Ping/Pong round trip. When not connected it starts connecting and pings once the link is up.
   * Rejects with TIMEOUT (no Pong, or no link, within `timeoutMs`), CLOSED (client closed or link lost before the
   * Pong) or ABORTED.
   */
  ping(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<number> {
    const timeoutMs = opts.timeoutMs ?? DERP_CLIENT.PING_TIMEOUT_MS;
    return new Promise<number>((resolve, reject) => {
      if (opts.signal?.aborted) return reject(abortError(opts.signal));
      if (this.stateName === 'closed')
        return reject(new MeshsockError(ErrorCode.CLOSED, 'DERP region client is closed'));
      let entry: PendingPing | undefined;
      let done = false;
      const finish = (err: unknown, ms?: number): void => {
        if (done) return;
        done = true;
        cancelTimer();
        opts.signal?.removeEventListener('abort', onAbort);
        this.connectWaiters = this.connectWaiters.filter((w) => w !== sendNow);
        if (entry) this.pings = this.pings.filter((p) => p !== entry);
        if (err) reject(err);
        else resolve(ms!);
      };
      const onAbort = (): void => finish(abortError(opts.signal!));
      const cancelTimer = this.clock.setTimer(() => {
        this.counters.inc('pingTimeouts');
        finish(
          new MeshsockError(ErrorCode.TIMEOUT, `no DERP pong from region ${this.region.regionId} in ${timeoutMs} ms`),
        );
      }, timeoutMs);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const sendNow = (): void => {
        if (done) return;
        if (!this.conn || this.stateName !== 'connected') {
          finish(new MeshsockError(ErrorCode.CLOSED, `DERP region ${this.region.regionId} closed before the ping`));
          return;
        }
        const data = this.rng(DERP.PING_LEN).slice(0, DERP.PING_LEN);
        entry = { data, sentAt: this.clock.now(), resolve: (ms) => finish(undefined, ms), reject: (e) => finish(e) };
        this.pings.push(entry);
        this.counters.inc('pings');
        this.conn.ping(data);
      };
      if (this.stateName === 'connected') sendNow();
      else {
        // connecting, backoff or idle: ping once the link is up (bounded by the timeout).
        this.connectWaiters.push(sendNow);
        this.start();
      }
    });
  }

  /** A snapshot for status output. */
  status(): RegionStatus {
    const c = this.conn;
    return {
      regionId: this.region.regionId,
      regionCode: this.region.regionCode,
      state: this.stateName,
      connected: this.stateName === 'connected',
      since: this.stateSince,
      node: this.connNode?.name,
      url: c?.url,
      serverKey: c?.serverKey,
      localAddress: c?.localAddress,
      latencyMs: this.latency,
      lastActivity: this.activity,
      lastError: this.lastErr,
      health: this.healthText,
      preferred: this.preferredFlag,
      counters: this.counters.snapshot(),
    };
  }

  /** Closes the connection and stops reconnecting. Pending pings reject with CLOSED. Idempotent. */
  /**
   * Drops the current connection so the client dials again (from whatever local address the host now has): for a
   * network change that left the connection half-open. No-op when not connected.
   */
  reconnect(): void {
    this.counters.inc('forcedReconnects');
    this.conn?.close();
  }

  close(): void {
    if (this.stateName === 'closed') return;
    this.ac.abort(new MeshsockError(ErrorCode.CLOSED, 'DERP region client closed'));
    const conn = this.conn;
    this.conn = undefined;
    conn?.close();
    this.dropQueue();
    this.failPings(new MeshsockError(ErrorCode.CLOSED, 'DERP region client closed'));
    for (const w of this.connectWaiters.splice(0)) w();
    this.setState('closed');
  }

  private drop(reason: RegionCounter): false {
    this.counters.inc(reason);
    publish(channels.drop, () => ({ where: `derp-region-${this.region.regionId}`, reason }));
    return false;
  }

  private dropQueue(): void {
    if (this.queue.length === 0) return;
    this.counters.inc('dropConnectFailed', this.queue.length);
    this.queue = [];
  }

  private failPings(err: Error): void {
    for (const p of this.pings.splice(0)) p.reject(err);
  }

  private setState(s: RegionState, err?: unknown): void {
    if (err !== undefined) this.lastErr = err instanceof Error ? err.message : String(err);
    if (this.stateName === s && err === undefined) return;
    this.stateName = s;
    this.stateSince = this.clock.now();
    publish(channels.derpClient, () => ({ region: this.region.regionId, state: s, error: err }));
    this.emit('state', this.status());
  }

  /** The connect/reconnect loop: one p-retry sequence per disconnection. */
  private async run(): Promise<void> {
    const b = this.opts.backoff ?? {};
    const minMs = b.minMs ?? DERP_CLIENT.BACKOFF_MIN_MS;
    while (!this.ac.signal.aborted) {
      let conn: DerpConn;
      try {
        conn = await pRetry(() => this.dialRegion(), {
          retries: Infinity,
          minTimeout: minMs,
          maxTimeout: b.maxMs ?? DERP_CLIENT.BACKOFF_MAX_MS,
          factor: b.factor ?? DERP_CLIENT.BACKOFF_FACTOR,
          randomize: b.randomize ?? true,
          signal: this.ac.signal,
          unref: true,
          onFailedAttempt: ({ error }) => {
            this.counters.inc('connectFailures');
            this.dropQueue();
            if (!this.ac.signal.aborted) this.setState('backoff', error);
          },
        });
      } catch (err) {
        // Aborted (closed) or a non-retryable error (bad options): the client is done.
        if (!this.ac.signal.aborted) {
          this.lastErr = (err as Error).message;
          this.close();
        }
        return;
      }
      if (this.ac.signal.aborted) {
        conn.close();
        return;
      }
      const connectedAt = this.clock.now();
      const lost = await this.attach(conn);
      if (this.ac.signal.aborted) return;
      this.counters.inc('disconnects');
      const why = lost ?? new MeshsockError(ErrorCode.CLOSED, 'DERP connection closed');
      if (this.clock.now() - connectedAt < DERP_CLIENT.FLAP_MS) {
        this.setState('backoff', why);
        await this.sleep(minMs);
      } else this.setState('connecting', why);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const cancel = this.clock.setTimer(() => {
        this.ac.signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = (): void => {
        cancel();
        resolve();
      };
      this.ac.signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** One connect attempt across the region's nodes, in order. */
  private async dialRegion(): Promise<DerpConn> {
    this.setState('connecting');
    const nodes = derpNodes(this.region);
    const budget = this.opts.connectTimeoutMs ?? DERP.CONNECT_TIMEOUT_MS;
    const perNode = this.opts.dialNodeTimeoutMs ?? DERP.DIAL_NODE_TIMEOUT_MS;
    const deadline = this.clock.now() + budget;
    let firstErr: unknown;
    for (let i = 0; i < nodes.length; i++) {
      const node = nodes[i]!;
      const left = deadline - this.clock.now();
      if (left <= 0) break;
      const timeoutMs = i === nodes.length - 1 ? left : Math.min(perNode, left);
      try {
        const conn = await this.connectFn({
          url: derpNodeUrl(node),
          privateKey: this.privateKey,
          signal: this.ac.signal,
          timeoutMs,
          tls: { ...nodeTlsOptions(node), ...this.opts.tls },
          canAckPings: true,
          clock: this.clock,
        });
        this.connNode = node;
        return conn;
      } catch (err) {
        if (this.ac.signal.aborted) throw new PRetryAbortError(abortError(this.ac.signal));
        firstErr ??= err;
      }
    }
    const e = firstErr as Error | undefined;
    // p-retry does not retry TypeErrors: wrap so a connect failure is always retried.
    throw new MeshsockError(
      ErrorCode.DERP_CONNECT,
      `DERP region ${this.region.regionId} (${this.region.regionCode}): ${e?.message ?? 'connect budget exhausted'}`,
      { cause: e },
    );
  }

  /** Runs a connection until it closes; resolves with the error that ended it. */
  private attach(conn: DerpConn): Promise<Error | undefined> {
    this.conn = conn;
    this.counters.inc('connects');
    this.activity = this.clock.now();
    this.healthText = undefined;
    if (this.preferredFlag) conn.notePreferred(true);
    return new Promise((resolve) => {
      conn.on('frame', (f) => this.onFrame(f));
      conn.once('close', (err) => {
        if (this.conn === conn) this.conn = undefined;
        this.failPings(
          new MeshsockError(ErrorCode.CLOSED, `DERP region ${this.region.regionId} link lost before the pong`, {
            cause: err,
          }),
        );
        resolve(err);
      });
      this.setState('connected');
      const queued = this.queue;
      this.queue = [];
      for (const q of queued) this.send(q.dst, q.packet);
      for (const w of this.connectWaiters.splice(0)) w();
    });
  }

  private onFrame(f: Frame): void {
    this.activity = this.clock.now();
    switch (f.type) {
      case 'recvPacket': {
        this.counters.inc('packetsIn');
        let src = this.lastSrc;
        if (!src || !bytesEqual(src.bytes, f.src)) src = this.lastSrc = new PublicKey(f.src);
        this.emit('packet', src, f.packet.slice());
        break;
      }
      case 'peerGone':
        this.emit('peerGone', new PublicKey(f.key), f.reason);
        break;
      case 'pong': {
        const p = this.pings.find((x) => bytesEqual(x.data, f.data));
        if (p) {
          const ms = this.clock.now() - p.sentAt;
          this.latency = ms;
          p.resolve(ms);
        }
        break;
      }
      case 'health':
        this.healthText = f.problem === '' ? undefined : f.problem;
        this.emit('state', this.status());
        break;
      default:
        break; // keepAlive, ping (answered by DerpConn), peerPresent, restarting, unknown: activity only
    }
  }
}
