/**
 * A Signaller over WebSocket, and the small relay server it talks to — for deployments without DERP (or to keep
 * signalling off the relays). The relay forwards opaque signal envelopes by node key; it learns nothing from them
 * (they are sealed with keys derived from the node keys) and cannot forge them. A client proves it owns the key it
 * registers, so nobody can take over another peer's inbox:
 *
 *   server → client  text    {"challenge":"<64 hex>","serverKey":"<64 hex>"}        on connect
 *   client → server  binary  clientKey[32] proof[32]                                 registration (64 bytes)
 *   client → server  binary  to[32] envelope                                         a message for `to`
 *   server → client  binary  envelope                                                a message for us
 *
 *   proof = HMAC-SHA256(registration key, "meshsock v1 signal relay registration" ‖ serverKey ‖ clientKey ‖ challenge)
 *   registration key = HMAC-SHA256(NaCl box key(clientKey, serverKey), "meshsock v1 signal relay registration")
 *
 * The answer is a MAC of fixed length in a fixed format under a key made for registration alone (src/key/purpose.ts),
 * never a box of the relay's bytes: a relay may choose any challenge and any "server key" (even another peer's node
 * key), and what it gets back still opens as nothing — not a signal envelope, not anything else. The client answers
 * only a challenge of exactly 32 bytes in lower-case hex, once per connection.
 *
 * Bounds: a message for a key with no connection is dropped (counted; the socket resends its CallMeMaybe until
 * answered); each sender has a byte token bucket (over it: dropped and counted); a receiver that does not read
 * gets nothing more once its connection holds `maxBufferedBytes` (dropped and counted), so a flood costs the relay
 * at most that much per receiver.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { TokenBucket } from '../derp/token-bucket.js';
import { ErrorCode, MeshsockError } from '../errors.js';
import { bytesEqual, fromHex, toHex } from '../internal/bytes.js';
import { Counters } from '../internal/diagnostics.js';
import { SharedKey } from '../key/box.js';
import { PrivateKey, PublicKey } from '../key/keys.js';
import { hmacSha256, KeyPurpose, purposeKey } from '../key/purpose.js';
import type { Signaller } from './signaller.js';

const KEY = 32;
/** The relay's challenge: 32 random bytes, sent as 64 lower-case hex digits. */
const CHALLENGE_LEN = 32;
const CHALLENGE_RE = /^[0-9a-f]{64}$/;
/** Registration message: clientKey[32] proof[32]. */
const REGISTRATION_LEN = 2 * KEY;
const REGISTRATION_LABEL = new TextEncoder().encode(KeyPurpose.SIGNAL_RELAY_REGISTRATION);

/** Limits of the relay and the client; each with its reason. */
export const SIGNAL_RELAY = {
  /** Largest message relayed: an envelope with a CallMeMaybe of 100 endpoints is about 2 KiB. */
  MAX_MESSAGE: 16 << 10,
  /** A client must register within this long after connecting. */
  REGISTER_TIMEOUT_MS: 5_000,
  /** Reconnect delay after the connection drops (doubles up to the cap). */
  RECONNECT_MIN_MS: 250,
  RECONNECT_MAX_MS: 5_000,
  /** Messages queued while (re)connecting; older ones are dropped. */
  QUEUE_MAX: 64,
  /**
   * Bytes the relay lets wait in one receiver's connection before dropping more for it: a few hundred envelopes, so
   * a burst of CallMeMaybes to a busy node passes, while a receiver that never reads costs at most this much.
   */
  MAX_BUFFERED_BYTES: 1 << 20,
  /**
   * Per-sender token bucket (bytes): an envelope is 100 B to 2 KiB and a socket sends one per peer every few seconds
   * at most, so 256 KiB/s with a 1 MiB burst (a fresh start towards hundreds of peers) is far above honest use and
   * keeps one key from monopolising the relay.
   */
  SENDER_BYTES_PER_SEC: 256 << 10,
  SENDER_BURST_BYTES: 1 << 20,
} as const;

function toU8(d: RawData): Uint8Array {
  const b = Array.isArray(d) ? Buffer.concat(d) : Buffer.isBuffer(d) ? d : Buffer.from(d as ArrayBuffer);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The registration proof `clientKey` gives for `challenge` to the relay whose key is `serverKey`. Both sides compute
 * it (the relay with its private key and the client's public key). Throws MeshsockError PROTOCOL when the challenge
 * is not exactly 32 bytes.
 */
export function registrationProof(
  mine: PrivateKey,
  theirs: PublicKey,
  challenge: Uint8Array,
  clientKey: PublicKey,
  serverKey: PublicKey,
): Uint8Array {
  if (challenge.length !== CHALLENGE_LEN)
    throw new MeshsockError(ErrorCode.PROTOCOL, `signal relay challenge must be ${CHALLENGE_LEN} bytes`);
  const key = purposeKey(SharedKey.compute(mine, theirs), KeyPurpose.SIGNAL_RELAY_REGISTRATION);
  return hmacSha256(key.bytes, REGISTRATION_LABEL, serverKey.bytes, clientKey.bytes, challenge);
}

/** Options of `SignalRelayServer.listen`. */
export interface SignalRelayServerOptions {
  host?: string;
  port?: number;
  /** Per-receiver bound on bytes waiting in its connection; default SIGNAL_RELAY.MAX_BUFFERED_BYTES. */
  maxBufferedBytes?: number;
  /** Per-sender byte token bucket; default SIGNAL_RELAY.SENDER_BYTES_PER_SEC / SENDER_BURST_BYTES. */
  senderRate?: { bytesPerSec: number; burst: number };
}

export class SignalRelayServer {
  readonly counters = new Counters<
    'registered' | 'relayed' | 'drop-offline' | 'drop-malformed' | 'rejected' | 'drop-receiver-full' | 'drop-rate-limit'
  >();
  private readonly inboxes = new Map<string, WebSocket>();
  private readonly key = PrivateKey.generate();
  private readonly maxBuffered: number;
  private readonly senderRate: { bytesPerSec: number; burst: number };

  private constructor(
    private readonly wss: WebSocketServer,
    opts: SignalRelayServerOptions,
  ) {
    this.maxBuffered = opts.maxBufferedBytes ?? SIGNAL_RELAY.MAX_BUFFERED_BYTES;
    this.senderRate = opts.senderRate ?? {
      bytesPerSec: SIGNAL_RELAY.SENDER_BYTES_PER_SEC,
      burst: SIGNAL_RELAY.SENDER_BURST_BYTES,
    };
    if (!(this.maxBuffered > 0)) throw new RangeError(`"maxBufferedBytes" expected > 0, got ${this.maxBuffered}`);
    wss.on('connection', (ws) => this.accept(ws));
  }

  static async listen(opts: SignalRelayServerOptions = {}): Promise<SignalRelayServer> {
    const wss = new WebSocketServer({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 0,
      maxPayload: SIGNAL_RELAY.MAX_MESSAGE,
      perMessageDeflate: false,
    });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    try {
      return new SignalRelayServer(wss, opts);
    } catch (err) {
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      throw err;
    }
  }

  get url(): string {
    const a = this.wss.address() as AddressInfo;
    return `ws://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  /** Largest number of bytes waiting in any one registered connection right now (a gauge for tests and health). */
  maxBufferedAmount(): number {
    let max = 0;
    for (const ws of this.inboxes.values()) max = Math.max(max, ws.bufferedAmount);
    return max;
  }

  private accept(ws: WebSocket): void {
    const challenge = randomBytes(CHALLENGE_LEN);
    let self: string | undefined;
    let bucket: TokenBucket | undefined;
    const timer = setTimeout(() => ws.terminate(), SIGNAL_RELAY.REGISTER_TIMEOUT_MS);
    ws.send(JSON.stringify({ challenge: challenge.toString('hex'), serverKey: this.key.publicKey.hex }));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      clearTimeout(timer);
      if (self && this.inboxes.get(self) === ws) this.inboxes.delete(self);
    });
    ws.on('message', (data, isBinary) => {
      const b = toU8(data);
      if (self === undefined) {
        try {
          if (!isBinary || b.length !== REGISTRATION_LEN) throw new Error('not a registration');
          const claimed = new PublicKey(b.subarray(0, KEY));
          const want = registrationProof(this.key, claimed, challenge, claimed, this.key.publicKey);
          if (!bytesEqual(b.subarray(KEY), want)) throw new Error('wrong proof');
          self = claimed.hex;
          clearTimeout(timer);
          bucket = new TokenBucket(this.senderRate.bytesPerSec, this.senderRate.burst, performance.now());
          this.inboxes.get(self)?.close(4000, 'replaced by a newer connection');
          this.inboxes.set(self, ws);
          this.counters.inc('registered');
        } catch {
          this.counters.inc('rejected');
          ws.close(4001, 'registration failed');
        }
        return;
      }
      if (!isBinary || b.length < KEY) {
        this.counters.inc('drop-malformed');
        return;
      }
      if (!bucket!.allow(b.length, performance.now())) {
        this.counters.inc('drop-rate-limit');
        return;
      }
      const to = this.inboxes.get(toHex(b.subarray(0, KEY)));
      if (!to || to.readyState !== WebSocket.OPEN) {
        this.counters.inc('drop-offline');
        return;
      }
      if (to.bufferedAmount + b.length - KEY > this.maxBuffered) {
        this.counters.inc('drop-receiver-full');
        return;
      }
      to.send(b.subarray(KEY));
      this.counters.inc('relayed');
    });
  }

  close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}

/**
 * Signaller over a SignalRelayServer. Reconnects by itself; messages sent while disconnected wait in a small queue.
 * `close()` when done (MagicSocket's close only stops listening).
 */
export class WebSocketSignaller implements Signaller {
  readonly counters = new Counters<'sent' | 'received' | 'drop-queue' | 'reconnects'>();
  private ws: WebSocket | undefined;
  private registered = false;
  private readonly queue: Uint8Array[] = [];
  private deliver: ((m: Uint8Array) => void) | undefined;
  private closed = false;
  private backoff: number = SIGNAL_RELAY.RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly privateKey: PrivateKey,
  ) {
    if (!/^wss?:\/\//.test(url))
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `signal relay URL must be ws:// or wss://, got ${url}`);
    this.connect();
  }

  send(to: PublicKey, message: Uint8Array): void {
    if (this.closed) throw new MeshsockError(ErrorCode.CLOSED, 'signaller is closed');
    const framed = new Uint8Array(KEY + message.length);
    framed.set(to.bytes);
    framed.set(message, KEY);
    if (this.registered && this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(framed);
      this.counters.inc('sent');
      return;
    }
    this.queue.push(framed);
    if (this.queue.length > SIGNAL_RELAY.QUEUE_MAX) {
      this.queue.shift();
      this.counters.inc('drop-queue');
    }
  }

  listen(self: PublicKey, deliver: (message: Uint8Array) => void): () => void {
    if (!self.equals(this.privateKey.publicKey))
      throw new MeshsockError(ErrorCode.BAD_CONFIG, 'WebSocketSignaller was created for a different node key');
    this.deliver = deliver;
    return () => {
      if (this.deliver === deliver) this.deliver = undefined;
    };
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    this.ws?.terminate();
  }

  private connect(): void {
    const ws = new WebSocket(this.url, { perMessageDeflate: false, maxPayload: SIGNAL_RELAY.MAX_MESSAGE });
    this.ws = ws;
    this.registered = false;
    let answered = false;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        try {
          // One challenge per connection, of exactly the expected form; anything else ends the connection.
          if (answered) throw new Error('a second challenge');
          answered = true;
          const text = String(data);
          if (text.length > 256) throw new Error('hello too long');
          const hello = JSON.parse(text) as { challenge?: unknown; serverKey?: unknown };
          if (typeof hello.challenge !== 'string' || !CHALLENGE_RE.test(hello.challenge))
            throw new Error('challenge is not 32 bytes of lower-case hex');
          if (typeof hello.serverKey !== 'string' || !/^[0-9a-f]{64}$/.test(hello.serverKey))
            throw new Error('server key is not 64 hex digits');
          const serverKey = PublicKey.parse(hello.serverKey);
          const me = this.privateKey.publicKey;
          const proof = registrationProof(this.privateKey, serverKey, fromHex(hello.challenge), me, serverKey);
          const reg = new Uint8Array(REGISTRATION_LEN);
          reg.set(me.bytes);
          reg.set(proof, KEY);
          ws.send(reg);
          this.registered = true;
          this.backoff = SIGNAL_RELAY.RECONNECT_MIN_MS;
          for (const m of this.queue.splice(0)) {
            ws.send(m);
            this.counters.inc('sent');
          }
        } catch {
          ws.terminate();
        }
        return;
      }
      this.counters.inc('received');
      this.deliver?.(toU8(data));
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      this.registered = false;
      if (this.closed) return;
      this.counters.inc('reconnects');
      this.reconnectTimer = setTimeout(() => this.connect(), this.backoff);
      this.reconnectTimer.unref?.();
      this.backoff = Math.min(this.backoff * 2, SIGNAL_RELAY.RECONNECT_MAX_MS);
    });
  }
}
