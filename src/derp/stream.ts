/**
 * One byte-stream shape over the three transports a DERP connection runs on — a TCP socket, a TLS socket (both after
 * the HTTP upgrade) and a WebSocket with subprotocol `derp` — so the client connection and the server's per-client
 * driver are written once. The WebSocket carries the DERP byte stream in binary messages whose boundaries need not
 * match frame boundaries (tailscale-protocols.md §2.1).
 *
 * Handlers are set once with `setHandlers`; `close` is reported exactly once, with the error that ended the stream
 * (undefined for a clean end).
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { AddrPort } from '../internal/addr.js';
import { normalizeIp } from '../internal/addr.js';

/** What a stream reports to its owner. */
export interface ByteStreamHandlers {
  data(chunk: Uint8Array): void;
  /** The socket's buffer fell below its high-water mark after `needDrain` was true. */
  drain(): void;
  close(err: Error | undefined): void;
}

/** A duplex byte stream under a DERP connection. */
export interface ByteStream {
  readonly kind: 'tcp' | 'tls' | 'websocket';
  readonly localAddress: AddrPort | undefined;
  readonly remoteAddress: AddrPort | undefined;
  /** Bytes accepted by `write` but not yet handed to the kernel. */
  readonly bufferedAmount: number;
  /** True once the buffered bytes passed the high-water mark; `drain` follows when they fall back. */
  readonly needDrain: boolean;
  readonly destroyed: boolean;
  setHandlers(h: ByteStreamHandlers): void;
  write(chunk: Uint8Array): void;
  /** Batches the writes that follow into one system call until `uncork` (a no-op for WebSocket). */
  cork(): void;
  uncork(): void;
  pause(): void;
  resume(): void;
  /** Flushes what is buffered, then closes. */
  end(): void;
  destroy(err?: Error): void;
}

function addrOf(ip: string | undefined, port: number | undefined): AddrPort | undefined {
  if (ip === undefined || port === undefined) return undefined;
  try {
    return { ip: normalizeIp(ip), port };
  } catch {
    return undefined;
  }
}

/** A stream over a connected (and, for the client, already upgraded) TCP or TLS socket. */
export class SocketStream implements ByteStream {
  readonly kind: 'tcp' | 'tls';
  private handlers: ByteStreamHandlers | undefined;
  private error: Error | undefined;
  private closed = false;

  constructor(readonly socket: Socket) {
    this.kind = 'encrypted' in socket && (socket as { encrypted?: boolean }).encrypted ? 'tls' : 'tcp';
  }

  get localAddress(): AddrPort | undefined {
    return addrOf(this.socket.localAddress, this.socket.localPort);
  }
  get remoteAddress(): AddrPort | undefined {
    return addrOf(this.socket.remoteAddress, this.socket.remotePort);
  }
  get bufferedAmount(): number {
    return this.socket.writableLength;
  }
  get needDrain(): boolean {
    return this.socket.writableNeedDrain;
  }
  get destroyed(): boolean {
    return this.closed || this.socket.destroyed;
  }

  setHandlers(h: ByteStreamHandlers): void {
    this.handlers = h;
    const s = this.socket;
    s.on('data', (chunk: Buffer) => h.data(chunk));
    s.on('drain', () => h.drain());
    s.on('error', (err: Error) => {
      this.error ??= err;
    });
    s.on('end', () => {
      // The peer half-closed: DERP has no half-open state, so finish our side too.
      s.end();
    });
    s.on('close', () => this.reportClose());
    if (s.destroyed) queueMicrotask(() => this.reportClose());
  }

  private reportClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close(this.error);
  }

  write(chunk: Uint8Array): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(chunk);
  }
  cork(): void {
    this.socket.cork();
  }
  uncork(): void {
    this.socket.uncork();
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  end(): void {
    this.socket.end();
    // A peer that never reads must not keep the socket open forever after a graceful end.
    this.socket.setTimeout(2_000, () => this.socket.destroy());
  }
  destroy(err?: Error): void {
    if (err) this.error ??= err;
    this.socket.destroy();
  }
}

/**
 * A stream over a WebSocket. `socket` is the TCP/TLS socket under it (from the upgrade), used for addresses and
 * for back-pressure: ws writes each message straight into it. Messages that arrive before `setHandlers` are held
 * and handed over when it is called, so none is lost between the upgrade and the owner taking the stream.
 */
export class WebSocketStream implements ByteStream {
  readonly kind = 'websocket' as const;
  private handlers: ByteStreamHandlers | undefined;
  private early: Uint8Array[] | undefined = [];
  private error: Error | undefined;
  private closed = false;
  private closedEarly = false;

  constructor(
    readonly ws: WebSocket,
    readonly socket: Socket | undefined,
  ) {
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
      if (!isBinary) {
        this.destroy(new Error('derp over websocket: text message'));
        return;
      }
      const chunks = Array.isArray(data) ? data : [data instanceof ArrayBuffer ? new Uint8Array(data) : data];
      for (const c of chunks) {
        if (this.handlers) this.handlers.data(c);
        else this.early?.push(c);
      }
    });
    ws.on('error', (err: Error) => {
      this.error ??= err;
    });
    ws.on('close', () => {
      if (this.handlers) this.reportClose();
      else this.closedEarly = true;
    });
  }

  get localAddress(): AddrPort | undefined {
    return addrOf(this.socket?.localAddress, this.socket?.localPort);
  }
  get remoteAddress(): AddrPort | undefined {
    return addrOf(this.socket?.remoteAddress, this.socket?.remotePort);
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }
  get needDrain(): boolean {
    return this.socket?.writableNeedDrain ?? false;
  }
  get destroyed(): boolean {
    return this.closed || this.ws.readyState >= 2;
  }

  setHandlers(h: ByteStreamHandlers): void {
    this.handlers = h;
    this.socket?.on('drain', () => h.drain());
    const early = this.early ?? [];
    this.early = undefined;
    for (const c of early) {
      if (this.closed) break;
      h.data(c);
    }
    if (this.closedEarly || this.ws.readyState === 3) queueMicrotask(() => this.reportClose());
  }

  private reportClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.close(this.error);
  }

  write(chunk: Uint8Array): void {
    if (this.ws.readyState === 1) this.ws.send(chunk, { binary: true, compress: false });
  }
  cork(): void {}
  uncork(): void {}
  pause(): void {
    this.ws.pause();
  }
  resume(): void {
    this.ws.resume();
  }
  end(): void {
    this.ws.close(1000);
  }
  destroy(err?: Error): void {
    if (err) this.error ??= err;
    this.ws.terminate();
  }
}
