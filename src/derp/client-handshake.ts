/**
 * DERP client handshake as a sans-IO core — wire-compatible with Tailscale DERP v2 (tailscale-protocols.md §2.3).
 *
 *   server → ServerKey   magic "DERP🔑"[8] serverKey[32]            (at most 1 KiB; later bytes ignored)
 *   client → ClientInfo  clientKey[32] nonce[24] box(JSON)          box sealed node key → server key (sealTo)
 *            JSON = {"version":2,"CanAckPings":true[,"meshKey":"<64 hex>"][,"IsProber":true]}
 *   server → ServerInfo  nonce[24] box(JSON)                        box sealed server key → node key (openFrom)
 *            JSON = {"version":2[,"TokenBucketBytesPerSecond":N,"TokenBucketBytesBurst":N]}
 *
 * The driver feeds decoded frames (`handleFrame`), the end of the stream (`handleEnd`) and its timer
 * (`handleTimeout` at `pollTimeout()`), and carries out the returned actions. While waiting for ServerKey the
 * driver's frame reader should accept at most `maxFrameLength` bytes per frame.
 *
 * Before ServerInfo arrives a server Ping is answered (when CanAckPings), KeepAlive is ignored and a Health text
 * is remembered: a meshsock server sends one starting with DERP.DENIED_HEALTH_PREFIX before closing a client its
 * admission hook refused, which turns the EOF into DERP_DENIED instead of DERP_CONNECT.
 */
import { ErrorCode, MeshsockError } from '../errors.js';
import { systemRandom, type RandomSource } from '../internal/clock.js';
import { NONCE_LEN, SharedKey, TAG_LEN } from '../key/box.js';
import { PublicKey, type PrivateKey } from '../key/keys.js';
import { DERP } from './constants.js';
import { encodeFrame, type Frame } from './frame.js';

/** What the server told the client in ServerInfo. */
export interface DerpServerInfo {
  version: number;
  /** Client-side send limit the server asks for (bytes per second); absent when unlimited. */
  tokenBucketBytesPerSecond?: number;
  /** Burst for that limit (bytes). */
  tokenBucketBytesBurst?: number;
}

/** A completed handshake. */
export interface ClientHandshakeResult {
  serverKey: PublicKey;
  serverInfo: DerpServerInfo;
}

export type ClientHandshakeAction =
  | { type: 'send'; bytes: Uint8Array }
  | { type: 'done'; result: ClientHandshakeResult }
  | { type: 'fail'; error: MeshsockError };

export type ClientHandshakeState = 'awaitServerKey' | 'awaitServerInfo' | 'done' | 'failed';

export interface ClientHandshakeOptions {
  privateKey: PrivateKey;
  /** 64 hex digits; marks a mesh peer. */
  meshKey?: string | undefined;
  /** Default true. */
  canAckPings?: boolean | undefined;
  isProber?: boolean | undefined;
  /** The key from the upgrade's Derp-Public-Key header; ServerKey must match it when given. */
  expectedServerKey?: PublicKey | undefined;
  /** Absolute deadline (ms on the driver's clock) for the whole handshake. */
  deadline?: number | undefined;
  rng?: RandomSource | undefined;
}

const MESH_KEY_RE = /^[0-9a-fA-F]{64}$/;

/** Throws TypeError unless `k` is 64 hex digits. */
export function checkMeshKey(k: string, name = 'meshKey'): string {
  if (typeof k !== 'string' || !MESH_KEY_RE.test(k)) throw new TypeError(`"${name}" expected 64 hex digits`);
  return k.toLowerCase();
}

/** The ClientInfo JSON a client sends (exported for tests and for the server's own test clients). */
export function clientInfoJson(o: {
  meshKey?: string | undefined;
  canAckPings?: boolean | undefined;
  isProber?: boolean | undefined;
}): string {
  const info: Record<string, unknown> = { version: DERP.PROTOCOL_VERSION, CanAckPings: o.canAckPings ?? true };
  if (o.meshKey !== undefined) info.meshKey = checkMeshKey(o.meshKey);
  if (o.isProber) info.IsProber = true;
  return JSON.stringify(info);
}

/** Reads a ServerInfo JSON document leniently (unknown fields ignored, as Go's decoder does). */
export function parseServerInfoJson(text: string): DerpServerInfo {
  const v: unknown = JSON.parse(text);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError('ServerInfo is not a JSON object');
  const o = v as Record<string, unknown>;
  const num = (name: string): number | undefined => {
    for (const [k, x] of Object.entries(o))
      if (k.toLowerCase() === name.toLowerCase() && typeof x === 'number' && Number.isFinite(x) && x > 0) return x;
    return undefined;
  };
  const info: DerpServerInfo = { version: num('version') ?? 0 };
  const rate = num('TokenBucketBytesPerSecond');
  const burst = num('TokenBucketBytesBurst');
  if (rate !== undefined) info.tokenBucketBytesPerSecond = rate;
  if (burst !== undefined) info.tokenBucketBytesBurst = burst;
  return info;
}

const UTF8 = new TextEncoder();
const UTF8_DEC = new TextDecoder();

/** The client side of the DERP login. One instance per connection attempt. */
export class ClientHandshake {
  private stateValue: ClientHandshakeState = 'awaitServerKey';
  private serverKey: PublicKey | undefined;
  private shared: SharedKey | undefined;
  private lastHealth = '';
  private readonly opts: ClientHandshakeOptions;

  constructor(opts: ClientHandshakeOptions) {
    if (opts.meshKey !== undefined) checkMeshKey(opts.meshKey);
    this.opts = opts;
  }

  get state(): ClientHandshakeState {
    return this.stateValue;
  }

  /** Largest frame payload the driver should accept in the current state. */
  get maxFrameLength(): number {
    return this.stateValue === 'awaitServerKey' ? DERP.MAX_SERVER_KEY_LEN : DERP.MAX_CLIENT_FRAME;
  }

  /** When the driver must call `handleTimeout`, or undefined once finished. */
  pollTimeout(): number | undefined {
    return this.finished ? undefined : this.opts.deadline;
  }

  private get finished(): boolean {
    return this.stateValue === 'done' || this.stateValue === 'failed';
  }

  private fail(msg: string, code: ErrorCode = ErrorCode.DERP_CONNECT, cause?: unknown): ClientHandshakeAction[] {
    this.stateValue = 'failed';
    return [{ type: 'fail', error: new MeshsockError(code, msg, { cause }) }];
  }

  /** Feeds one decoded frame from the server. */
  handleFrame(f: Frame, _now: number): ClientHandshakeAction[] {
    if (this.finished) return [];
    if (this.stateValue === 'awaitServerKey') {
      if (f.type !== 'serverKey') return this.fail(`DERP handshake: expected ServerKey, got ${f.type} frame`);
      const key = new PublicKey(f.key);
      const expected = this.opts.expectedServerKey;
      if (expected && !expected.equals(key))
        return this.fail('DERP handshake: ServerKey does not match the Derp-Public-Key header');
      this.serverKey = key;
      let sealed: Uint8Array;
      try {
        // One X25519 for the login: the same box key seals ClientInfo and opens ServerInfo (as SealTo/OpenFrom do).
        this.shared = SharedKey.compute(this.opts.privateKey, key);
        const nonce = (this.opts.rng ?? systemRandom)(NONCE_LEN);
        const box = this.shared.seal(nonce, UTF8.encode(clientInfoJson(this.opts)));
        sealed = new Uint8Array(NONCE_LEN + box.length);
        sealed.set(nonce);
        sealed.set(box, NONCE_LEN);
      } catch (err) {
        return this.fail('DERP handshake: cannot seal ClientInfo', ErrorCode.DERP_CONNECT, err);
      }
      this.stateValue = 'awaitServerInfo';
      return [
        { type: 'send', bytes: encodeFrame({ type: 'clientInfo', key: this.opts.privateKey.publicKey.bytes, sealed }) },
      ];
    }
    // awaitServerInfo
    switch (f.type) {
      case 'serverInfo': {
        let info: DerpServerInfo;
        try {
          if (f.sealed.length < NONCE_LEN + TAG_LEN) throw new Error('ServerInfo box too short');
          const plain = this.shared!.open(f.sealed.subarray(0, NONCE_LEN), f.sealed.subarray(NONCE_LEN));
          info = parseServerInfoJson(UTF8_DEC.decode(plain));
        } catch (err) {
          return this.fail('DERP handshake: bad ServerInfo', ErrorCode.DERP_CONNECT, err);
        }
        this.stateValue = 'done';
        this.shared = undefined;
        return [{ type: 'done', result: { serverKey: this.serverKey!, serverInfo: info } }];
      }
      case 'ping':
        return this.opts.canAckPings === false
          ? []
          : [{ type: 'send', bytes: encodeFrame({ type: 'pong', data: f.data }) }];
      case 'health':
        this.lastHealth = f.problem;
        return [];
      default:
        // KeepAlive and anything else a server may send early is not part of the login; skip it.
        return [];
    }
  }

  /** The stream ended (`err` is why, if known) before the handshake finished. */
  handleEnd(err: Error | undefined, _now: number): ClientHandshakeAction[] {
    if (this.finished) return [];
    if (this.lastHealth.startsWith(DERP.DENIED_HEALTH_PREFIX))
      return this.fail(`DERP server refused this client: ${this.lastHealth}`, ErrorCode.DERP_DENIED, err);
    const where = this.stateValue === 'awaitServerKey' ? 'before ServerKey' : 'before ServerInfo';
    return this.fail(`DERP connection closed ${where}${err ? `: ${err.message}` : ''}`, ErrorCode.DERP_CONNECT, err);
  }

  /** Gives up when the deadline has passed. */
  handleTimeout(now: number): ClientHandshakeAction[] {
    if (this.finished || this.opts.deadline === undefined || now < this.opts.deadline) return [];
    return this.fail(`DERP handshake timed out (${this.stateValue})`, ErrorCode.TIMEOUT);
  }
}
