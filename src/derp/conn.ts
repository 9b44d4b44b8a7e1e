/**
 * `DerpConn`: one low-level client connection to one DERP server — wire-compatible with Tailscale DERP v2
 * (tailscale-protocols.md §2). It dials (HTTP(S) upgrade or WebSocket, see dial.ts), runs the login through the
 * sans-IO `ClientHandshake`, then exposes the steady state: send frames with the methods below, receive every frame
 * as a `'frame'` event. It does not reconnect; a closed DerpConn stays closed (the region client above it redials).
 *
 *   connect:  dial → [ServerKey] → ClientInfo → [ServerInfo] → resolve
 *   steady:   SendPacket / NotePreferred / Ping / Pong / WatchConns / ClosePeer / ForwardPacket  →  server
 *             RecvPacket / KeepAlive / PeerGone / PeerPresent / Ping / Pong / Health / Restarting  ←  server
 *
 * Server Pings are answered automatically when `canAckPings` (the default). The link is declared dead after
 * DERP.CLIENT_READ_TIMEOUT_MS without a byte from the server (the server sends KeepAlive every 60 s). Frames too
 * short for their type are skipped and counted, as Tailscale's client does; a frame over 1 MiB closes the link.
 *
 * Writes issued in one tick are corked into one system call. `sendPacket` drops (returns false) when the server's
 * ServerInfo token bucket says so, or when DERP.CLIENT_MAX_BUFFERED_BYTES are already queued in the socket.
 */
import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import { DecodeError, ErrorCode, MeshsockError, abortError, throwIfAborted } from '../errors.js';
import type { AddrPort } from '../internal/addr.js';
import { DriverTimer, systemClock, type Clock, type RandomSource } from '../internal/clock.js';
import { channels, publish } from '../internal/diagnostics.js';
import { PrivateKey, PublicKey } from '../key/keys.js';
import { checkMeshKey, ClientHandshake, type ClientHandshakeAction, type DerpServerInfo } from './client-handshake.js';
import { DERP, FrameType } from './constants.js';
import { dialDerp, parseDerpUrl } from './dial.js';
import { decodeFrame, encodeFrame, encodeFrameHeaderInto, FrameReader, type Frame } from './frame.js';
import type { ByteStream } from './stream.js';
import { TokenBucket } from './token-bucket.js';

export type { DerpServerInfo } from './client-handshake.js';

/** Options for `DerpConn.connect`. */
export interface DerpConnectOptions {
  /** http://host:port/derp, https://…/derp, ws://…/derp or wss://…/derp. A bare origin gets the /derp path. */
  url: string;
  /** The client's node key (src/key). */
  privateKey: PrivateKey;
  /** 64 hex digits; marks a mesh peer (allowed WatchConns, ClosePeer, ForwardPacket; exempt from rate limits). */
  meshKey?: string;
  /** Aborts the connect (not the connection once established: use `close()`). */
  signal?: AbortSignal;
  /** Whole connect deadline (dial + TLS + upgrade + handshake); default DERP.CONNECT_TIMEOUT_MS. */
  timeoutMs?: number;
  /** TLS options for https/wss: ca, servername, rejectUnauthorized, … */
  tls?: ConnectionOptions;
  /** Tell the server we answer its Pings (and answer them); default true. */
  canAckPings?: boolean;
  /** Mark this connection as a prober in ClientInfo. */
  isProber?: boolean;
  /** Clock for the connect deadline and the read timeout; default the system clock. */
  clock?: Clock;
  /** Randomness for the ClientInfo nonce; default node:crypto. */
  rng?: RandomSource;
}

/** Per-connection counters (`conn.counters`), plain fields because some move per packet. */
export interface DerpConnCounters {
  framesIn: number;
  bytesIn: number;
  packetsOut: number;
  bytesOut: number;
  /** sendPacket/forwardPacket refused by the server's advertised token bucket. */
  dropRateLimited: number;
  /** sendPacket/forwardPacket refused because DERP.CLIENT_MAX_BUFFERED_BYTES were already queued. */
  dropBuffered: number;
  /** Frames too short for their type, skipped. */
  shortFrames: number;
  pingsAnswered: number;
}

const H = DERP.FRAME_HEADER_LEN;
const K = DERP.KEY_LEN;

/** Events: `'frame'` (f: Frame — byte views valid only inside the listener), `'close'` (err?: Error). */
export interface DerpConnEvents {
  frame: [f: Frame];
  close: [err: Error | undefined];
}

/**
 * A connected, logged-in DERP client connection. Create with `DerpConn.connect`. `'close'` carries no error only
 * when `close()` was called; otherwise it says why the link ended (CLOSED for a server EOF, TIMEOUT for a silent
 * server, DECODE for an oversize frame).
 */
export class DerpConn extends EventEmitter<DerpConnEvents> {
  /** The server's node public key (from ServerKey). */
  readonly serverKey: PublicKey;
  /** What the server said in ServerInfo. */
  readonly serverInfo: DerpServerInfo;
  /** The URL this connection was made to. */
  readonly url: string;
  /** Per-connection counters. */
  readonly counters: DerpConnCounters = {
    framesIn: 0,
    bytesIn: 0,
    packetsOut: 0,
    bytesOut: 0,
    dropRateLimited: 0,
    dropBuffered: 0,
    shortFrames: 0,
    pingsAnswered: 0,
  };

  private readonly stream: ByteStream;
  private readonly reader: FrameReader;
  private readonly clock: Clock;
  private readonly canAckPings: boolean;
  private readonly sendBucket: TokenBucket | undefined;
  private readonly readTimer: DriverTimer;
  private lastRead: number;
  private ready = false;
  private corked = false;
  private closedFlag = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.stream.uncork();
  };

  private constructor(
    stream: ByteStream,
    reader: FrameReader,
    result: { serverKey: PublicKey; serverInfo: DerpServerInfo },
    opts: DerpConnectOptions,
    clock: Clock,
  ) {
    super();
    this.stream = stream;
    this.reader = reader;
    this.reader.maxFrameLength = DERP.MAX_CLIENT_FRAME;
    this.serverKey = result.serverKey;
    this.serverInfo = result.serverInfo;
    this.url = opts.url;
    this.clock = clock;
    this.canAckPings = opts.canAckPings ?? true;
    const { tokenBucketBytesPerSecond: rate, tokenBucketBytesBurst: burst } = result.serverInfo;
    this.sendBucket = rate && burst ? new TokenBucket(rate, burst, clock.now()) : undefined;
    this.lastRead = clock.now();
    this.readTimer = new DriverTimer(clock, () => this.onReadTimer());
    this.readTimer.armAt(this.lastRead + DERP.CLIENT_READ_TIMEOUT_MS);
    // Frames that came in the same chunk as ServerInfo wait until the caller has had a chance to add listeners.
    setImmediate(() => {
      this.ready = true;
      this.drainFrames();
    });
  }

  /**
   * Dials `opts.url`, upgrades and logs in. Rejects with MeshsockError DERP_CONNECT (dial, upgrade or protocol
   * failure), DERP_DENIED (the server's admission hook refused us), TIMEOUT or ABORTED; TypeError for bad options.
   */
  static async connect(opts: DerpConnectOptions): Promise<DerpConn> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" expected an object');
    if (!(opts.privateKey instanceof PrivateKey)) throw new TypeError('"privateKey" expected a PrivateKey');
    parseDerpUrl(opts.url);
    throwIfAborted(opts.signal);
    const clock = opts.clock ?? systemClock;
    const timeoutMs = opts.timeoutMs ?? DERP.CONNECT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new RangeError(`"timeoutMs" expected > 0, got ${timeoutMs}`);
    const deadline = clock.now() + timeoutMs;
    if (opts.meshKey !== undefined) checkMeshKey(opts.meshKey);
    const ctl = new AbortController();
    const onUserAbort = (): void => ctl.abort(abortError(opts.signal!));
    opts.signal?.addEventListener('abort', onUserAbort, { once: true });
    let onDeadline: () => void = () =>
      ctl.abort(new MeshsockError(ErrorCode.TIMEOUT, `DERP connect to ${opts.url} timed out after ${timeoutMs} ms`));
    const cancelTimer = clock.setTimer(() => onDeadline(), timeoutMs);
    publish(channels.derpClient, () => ({ url: opts.url, state: 'connecting' }));
    try {
      const dialed = await dialDerp({ url: opts.url, signal: ctl.signal, tls: opts.tls });
      const conn = await new Promise<DerpConn>((resolve, reject) => {
        const { stream } = dialed;
        const core = new ClientHandshake({
          privateKey: opts.privateKey,
          meshKey: opts.meshKey,
          canAckPings: opts.canAckPings,
          isProber: opts.isProber,
          expectedServerKey: parseKeyHeader(dialed.serverKeyHeader),
          deadline,
          rng: opts.rng,
        });
        const reader = new FrameReader(core.maxFrameLength);
        let target: DerpConn | undefined;
        let settled = false;
        const fail = (err: Error): void => {
          if (settled) return;
          settled = true;
          stream.destroy();
          reject(err);
        };
        const run = (actions: ClientHandshakeAction[]): void => {
          for (const a of actions) {
            if (settled) return;
            if (a.type === 'send') stream.write(a.bytes);
            else if (a.type === 'fail') fail(a.error);
            else {
              settled = true;
              target = new DerpConn(stream, reader, a.result, opts, clock);
              resolve(target);
            }
          }
        };
        const onHandshakeData = (chunk: Uint8Array): void => {
          reader.push(chunk);
          try {
            while (!settled) {
              reader.maxFrameLength = core.maxFrameLength;
              const raw = reader.nextRaw();
              if (!raw) break;
              run(core.handleFrame(decodeFrame(raw.type, raw.payload), clock.now()));
            }
          } catch (err) {
            run(core.handleEnd(err as Error, clock.now()));
          }
        };
        stream.setHandlers({
          data: (c) => (target ? target.onData(c) : onHandshakeData(c)),
          drain: () => {},
          close: (err) => (target ? target.onStreamClose(err) : run(core.handleEnd(err, clock.now()))),
        });
        onDeadline = () => run(core.handleTimeout(deadline));
        ctl.signal.addEventListener('abort', () => fail(ctl.signal.reason as Error), { once: true });
        if (dialed.head.length > 0) onHandshakeData(dialed.head);
      });
      publish(channels.derpClient, () => ({ url: opts.url, state: 'connected', server: conn.serverKey.toString() }));
      return conn;
    } catch (err) {
      publish(channels.derpClient, () => ({ url: opts.url, state: 'failed', error: err }));
      throw err;
    } finally {
      cancelTimer();
      opts.signal?.removeEventListener('abort', onUserAbort);
    }
  }

  /** Local address of the underlying socket. */
  get localAddress(): AddrPort | undefined {
    return this.stream.localAddress;
  }

  /** Remote address of the underlying socket. */
  get remoteAddress(): AddrPort | undefined {
    return this.stream.remoteAddress;
  }

  /** Bytes queued in the socket, not yet taken by the kernel. */
  get bufferedAmount(): number {
    return this.stream.bufferedAmount;
  }

  /** True once the connection is closed (by either side). */
  get closed(): boolean {
    return this.closedFlag;
  }

  /** Which transport carries the connection. */
  get transport(): 'tcp' | 'tls' | 'websocket' {
    return this.stream.kind;
  }

  /**
   * Sends `packet` to the client with key `dst` through the server. Returns false when the packet was dropped: the
   * connection is closed, the server's advertised token bucket is empty, or DERP.CLIENT_MAX_BUFFERED_BYTES are
   * already waiting in the socket. Throws MeshsockError TOO_LARGE over DERP.MAX_PACKET_SIZE bytes.
   */
  sendPacket(dst: PublicKey, packet: Uint8Array): boolean {
    if (packet.length > DERP.MAX_PACKET_SIZE)
      throw new MeshsockError(
        ErrorCode.TOO_LARGE,
        `DERP packet of ${packet.length} bytes exceeds ${DERP.MAX_PACKET_SIZE}`,
      );
    if (this.closedFlag) return false;
    const n = H + K + packet.length;
    if (!this.admit(n)) return false;
    const out = Buffer.allocUnsafe(n);
    encodeFrameHeaderInto(FrameType.SEND_PACKET, K + packet.length, out, 0);
    out.set(dst.bytes, H);
    out.set(packet, H + K);
    this.counters.packetsOut++;
    this.write(out);
    return true;
  }

  /**
   * Mesh only: asks the server to deliver `packet` from `src` to its local client `dst` (one hop). Same drop rules
   * and size limit as `sendPacket`.
   */
  forwardPacket(src: PublicKey, dst: PublicKey, packet: Uint8Array): boolean {
    if (packet.length > DERP.MAX_PACKET_SIZE)
      throw new MeshsockError(
        ErrorCode.TOO_LARGE,
        `DERP packet of ${packet.length} bytes exceeds ${DERP.MAX_PACKET_SIZE}`,
      );
    if (this.closedFlag) return false;
    const n = H + 2 * K + packet.length;
    if (!this.admit(n)) return false;
    const out = Buffer.allocUnsafe(n);
    encodeFrameHeaderInto(FrameType.FORWARD_PACKET, 2 * K + packet.length, out, 0);
    out.set(src.bytes, H);
    out.set(dst.bytes, H + K);
    out.set(packet, H + 2 * K);
    this.counters.packetsOut++;
    this.write(out);
    return true;
  }

  private admit(n: number): boolean {
    if (this.sendBucket && !this.sendBucket.allow(n, this.clock.now())) {
      this.counters.dropRateLimited++;
      return false;
    }
    if (this.stream.bufferedAmount > DERP.CLIENT_MAX_BUFFERED_BYTES) {
      this.counters.dropBuffered++;
      return false;
    }
    return true;
  }

  /** Tells the server whether it is this client's home region (stats only). */
  notePreferred(preferred: boolean): void {
    this.sendFrame({ type: 'notePreferred', preferred });
  }

  /** Sends a Ping with 8 bytes of `data`; the server answers with a Pong frame carrying the same bytes. */
  ping(data: Uint8Array): void {
    this.sendFrame({ type: 'ping', data });
  }

  /** Answers a server Ping (done automatically when canAckPings). */
  pong(data: Uint8Array): void {
    this.sendFrame({ type: 'pong', data });
  }

  /** Mesh only: subscribe to PeerPresent / PeerGone for every client of the server. */
  watchConns(): void {
    this.sendFrame({ type: 'watchConns' });
  }

  /** Mesh only: asks the server to close its connections for `key`. */
  closePeer(key: PublicKey): void {
    this.sendFrame({ type: 'closePeer', key: key.bytes });
  }

  private sendFrame(f: Frame): void {
    const bytes = encodeFrame(f); // throws RangeError for wrong-sized arguments, even when closed
    if (!this.closedFlag) this.write(bytes);
  }

  private write(bytes: Uint8Array): void {
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(this.uncork);
    }
    this.counters.bytesOut += bytes.length;
    this.stream.write(bytes);
  }

  /** Closes the connection; emits `'close'` with no error. Idempotent. */
  close(): void {
    this.shutdown(undefined);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.readTimer.stop();
    this.stream.destroy();
    publish(channels.derpClient, () => ({ url: this.url, state: 'closed', error: err }));
    process.nextTick(() => this.emit('close', err));
  }

  private onData(chunk: Uint8Array): void {
    if (this.closedFlag) return;
    this.lastRead = this.clock.now();
    this.counters.bytesIn += chunk.length;
    this.reader.push(chunk);
    if (this.ready) this.drainFrames();
  }

  private drainFrames(): void {
    for (;;) {
      if (this.closedFlag) return;
      let payload: Uint8Array | undefined;
      try {
        payload = this.reader.nextPayload();
      } catch (err) {
        this.shutdown(err as Error);
        return;
      }
      if (payload === undefined) return;
      let f: Frame;
      try {
        f = decodeFrame(this.reader.lastType, payload);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.counters.shortFrames++;
        publish(channels.derpClient, () => ({ url: this.url, state: 'badFrame', error: err }));
        continue;
      }
      this.counters.framesIn++;
      if (f.type === 'ping' && this.canAckPings) {
        this.counters.pingsAnswered++;
        this.pong(f.data);
      }
      this.emit('frame', f);
    }
  }

  private onStreamClose(err: Error | undefined): void {
    if (this.closedFlag) return;
    this.shutdown(
      new MeshsockError(ErrorCode.CLOSED, `DERP server closed the connection${err ? `: ${err.message}` : ''}`, {
        cause: err,
      }),
    );
  }

  private onReadTimer(): void {
    if (this.closedFlag) return;
    const due = this.lastRead + DERP.CLIENT_READ_TIMEOUT_MS;
    if (this.clock.now() < due) {
      this.readTimer.armAt(due);
      return;
    }
    this.shutdown(
      new MeshsockError(
        ErrorCode.TIMEOUT,
        `DERP server silent for ${DERP.CLIENT_READ_TIMEOUT_MS / 1000} s; link presumed dead`,
      ),
    );
  }
}

function parseKeyHeader(h: string | undefined): PublicKey | undefined {
  if (h === undefined) return undefined;
  try {
    return PublicKey.parse(h.trim());
  } catch {
    return undefined; // a malformed header is not fatal: the ServerKey frame is authoritative
  }
}
