/**
 * A Signaller over WebSocket, and the small relay server it talks to — for deployments without DERP (or to keep
 * signalling off the relays). The relay forwards opaque signal envelopes by node key; it learns nothing from them
 * (they are sealed with the node keys) and cannot forge them. A client proves it owns the key it registers, so
 * nobody can take over another peer's inbox:
 *
 *   server → client  text  {"challenge":"<32 hex>","serverKey":"<64 hex>"}        on connect
 *   client → server  binary  clientKey[32] sealTo(clientKey → serverKey, challenge)  registration
 *   client → server  binary  to[32] envelope                                       a message for `to`
 *   server → client  binary  envelope                                              a message for us
 *
 * Messages for a key with no connection are dropped (counted): the socket resends its CallMeMaybe until answered.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { ErrorCode, MeshsockError } from '../errors.js';
import { bytesEqual, fromHex, toHex } from '../internal/bytes.js';
import { Counters } from '../internal/diagnostics.js';
import { openFrom, sealTo } from '../key/box.js';
import { PrivateKey, PublicKey } from '../key/keys.js';
import type { Signaller } from './signaller.js';

const KEY = 32;
/** Largest message relayed: an envelope with a CallMeMaybe of 100 endpoints is about 2 KiB. */
const MAX_MESSAGE = 16 << 10;
/** A client must register within this long after connecting. */
const REGISTER_TIMEOUT_MS = 5_000;
/** Reconnect delay after the connection drops (doubles up to the cap). */
const RECONNECT_MIN_MS = 250;
const RECONNECT_MAX_MS = 5_000;
/** Messages queued while (re)connecting; older ones are dropped. */
const QUEUE_MAX = 64;

function toU8(d: RawData): Uint8Array {
  const b = Array.isArray(d) ? Buffer.concat(d) : Buffer.isBuffer(d) ? d : Buffer.from(d as ArrayBuffer);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export class SignalRelayServer {
  readonly counters = new Counters<'registered' | 'relayed' | 'drop-offline' | 'drop-malformed' | 'rejected'>();
  private readonly inboxes = new Map<string, WebSocket>();
  private readonly key = PrivateKey.generate();

  private constructor(private readonly wss: WebSocketServer) {
    wss.on('connection', (ws) => this.accept(ws));
  }

  static async listen(opts: { host?: string; port?: number } = {}): Promise<SignalRelayServer> {
    const wss = new WebSocketServer({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? 0,
      maxPayload: MAX_MESSAGE,
      perMessageDeflate: false,
    });
    await new Promise<void>((resolve, reject) => {
      wss.once('listening', resolve);
      wss.once('error', reject);
    });
    return new SignalRelayServer(wss);
  }

  get url(): string {
    const a = this.wss.address() as AddressInfo;
    return `ws://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  private accept(ws: WebSocket): void {
    const challenge = randomBytes(16);
    let self: string | undefined;
    const timer = setTimeout(() => ws.terminate(), REGISTER_TIMEOUT_MS);
    ws.send(JSON.stringify({ challenge: challenge.toString('hex'), serverKey: this.key.publicKey.hex }));
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      clearTimeout(timer);
      if (self && this.inboxes.get(self) === ws) this.inboxes.delete(self);
    });
    ws.on('message', (data, isBinary) => {
      const b = toU8(data);
      if (!isBinary || b.length < KEY) {
        this.counters.inc('drop-malformed');
        return;
      }
      if (self === undefined) {
        try {
          const claimed = new PublicKey(b.slice(0, KEY));
          if (!bytesEqual(openFrom(this.key, claimed, b.subarray(KEY)), challenge)) throw new Error('wrong challenge');
          self = claimed.hex;
          clearTimeout(timer);
          this.inboxes.get(self)?.close(4000, 'replaced by a newer connection');
          this.inboxes.set(self, ws);
          this.counters.inc('registered');
        } catch {
          this.counters.inc('rejected');
          ws.close(4001, 'registration failed');
        }
        return;
      }
      const to = this.inboxes.get(toHex(b.subarray(0, KEY)));
      if (!to || to.readyState !== WebSocket.OPEN) {
        this.counters.inc('drop-offline');
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
  private backoff = RECONNECT_MIN_MS;
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
    if (this.queue.length > QUEUE_MAX) {
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
    const ws = new WebSocket(this.url, { perMessageDeflate: false, maxPayload: MAX_MESSAGE });
    this.ws = ws;
    this.registered = false;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        try {
          const hello = JSON.parse(String(data)) as { challenge?: string; serverKey?: string };
          const serverKey = PublicKey.parse(String(hello.serverKey));
          const proof = sealTo(this.privateKey, serverKey, fromHex(String(hello.challenge)));
          const reg = new Uint8Array(KEY + proof.length);
          reg.set(this.privateKey.publicKey.bytes);
          reg.set(proof, KEY);
          ws.send(reg);
          this.registered = true;
          this.backoff = RECONNECT_MIN_MS;
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
      this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS);
    });
  }
}
