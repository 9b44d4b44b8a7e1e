/**
 * `DerpServer`: a DERP relay — wire-compatible with Tailscale DERP v2 (tailscale-protocols.md §2) — with an optional
 * STUN server beside it, mesh links to the other nodes of its region, an admission hook, per-client rate limits,
 * `/metrics` and `/health`.
 *
 *   GET /derp  Upgrade: DERP       → 101 (Upgrade: DERP, Derp-Version: 2, Derp-Public-Key) + ServerKey, then frames
 *   GET /derp  Upgrade: websocket  → 101 with Sec-WebSocket-Protocol: derp; ServerKey is the first binary message
 *   GET /derp  (no upgrade)        → 426
 *
 * Plain HTTP (for tests and behind a TLS terminator) or HTTPS with a given certificate. Everything observable goes
 * to the `channels.derpServer` diagnostics channel, `stats()` and `/metrics`; the server never prints.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import { normalizeIp, type AddrPort } from '../../internal/addr.js';
import { systemClock, systemRandom, type Clock, type RandomSource } from '../../internal/clock.js';
import { channels, publish } from '../../internal/diagnostics.js';
import { PrivateKey, type PublicKey } from '../../key/keys.js';
import { StunServer } from '../../stun/server.js';
import { checkMeshKey } from '../client-handshake.js';
import { DERP } from '../constants.js';
import { encodeFrame } from '../frame.js';
import { SocketStream, WebSocketStream } from '../stream.js';
import { checkVerifyClient, type VerifyClient } from './admission.js';
import { upgradeResponse } from './handshake.js';
import { handleHttpRequest } from './http.js';
import { MeshLink } from './mesh.js';
import { createMetrics } from './metrics.js';
import { Relay, ServerCounters, type RelayGauges } from './relay.js';

export type { VerifyClient, AdmissionRequest } from './admission.js';

/** Options for `DerpServer.listen`. */
export interface DerpServerOptions {
  /** Address to bind; default "127.0.0.1" (pass "::" or "0.0.0.0" to serve other machines). */
  host?: string;
  /** TCP port; default 0 (a free port; read `.address` / `.url`). */
  port?: number;
  /** The server's node key; default a fresh one. */
  privateKey?: PrivateKey;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** UDP port for the STUN server on the same host; 0 picks a free one; false (default) runs none. */
  stunPort?: number | false;
  /** 64 hex digits shared by the nodes of one region; holders are mesh peers. */
  meshKey?: string;
  /** URLs of the other nodes of the region to dial (needs meshKey). */
  meshWith?: string[];
  /** TLS options used when dialing `meshWith` URLs over https/wss (e.g. their CA). */
  meshTls?: ConnectionOptions;
  /** Redial interval for a broken mesh link; default DERP.MESH_RETRY_MS. */
  meshRetryMs?: number;
  /** Admission hook: a function, or a URL to POST to (Tailscale's --verify-client-url). */
  verifyClient?: VerifyClient;
  /** Per-client receive limit (mesh peers exempt); burst is raised to at least DERP.RATE_LIMIT_MIN_BURST. */
  rateLimit?: { bytesPerSec: number; burst: number };
  /** Per-client queue depth, for each of the disco and data queues; default DERP.SEND_QUEUE_DEPTH. */
  queueDepth?: number;
  /**
   * Deadline from TCP accept to the HTTP upgrade, and from the upgrade to ClientInfo; a connection that misses it is
   * destroyed. Default DERP.HANDSHAKE_TIMEOUT_MS.
   */
  handshakeTimeoutMs?: number;
  /** Open TCP connections accepted at once; more are destroyed at accept and counted. Default DERP.MAX_CONNECTIONS. */
  maxConnections?: number;
  /** Drop a client whose socket stays back-pressured this long; default DERP.WRITE_TIMEOUT_MS. */
  writeTimeoutMs?: number;
  /** Same for mesh peers; default DERP.MESH_WRITE_TIMEOUT_MS. */
  meshWriteTimeoutMs?: number;
  clock?: Clock;
  rng?: RandomSource;
}

/** `stats()`: current gauges plus every counter. */
export interface DerpServerStats extends RelayGauges {
  meshLinksUp: number;
  counters: ServerCounters;
  stun: { answered: number; droppedMalformed: number; droppedNotBinding: number; sendErrors: number } | undefined;
}

function positive(v: number | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (!(typeof v === 'number' && v > 0 && Number.isFinite(v))) throw new RangeError(`"${name}" expected > 0, got ${v}`);
  return v;
}

export class DerpServer {
  /** The bound address. */
  readonly address: AddrPort;
  /** `http://host:port/derp` (or https). */
  readonly url: string;
  /** The STUN server's address, when one runs. */
  readonly stunAddress: AddrPort | undefined;
  /** The server's prom-client registry (also served at /metrics). */
  readonly metrics: Registry;

  private readonly relay: Relay;
  private readonly http: HttpServer;
  private readonly wss: WebSocketServer;
  private readonly stun: StunServer | undefined;
  private readonly links: MeshLink[];
  private readonly sockets = new Set<Socket>();
  /** Sockets not yet upgraded, with the time they were accepted (TCP, or TLS when serving HTTPS). */
  private readonly preUpgrade = new Map<Socket, number>();
  /** Open TCP connections (the cap counts these). */
  private tcpConnections = 0;
  private readonly handshakeTimeoutMs: number;
  private readonly maxConnections: number;
  private sweeper: NodeJS.Timeout | undefined;
  private readonly startedAt: number;
  private closing: Promise<void> | undefined;

  private constructor(init: {
    relay: Relay;
    http: HttpServer;
    wss: WebSocketServer;
    stun: StunServer | undefined;
    links: MeshLink[];
    address: AddrPort;
    secure: boolean;
    handshakeTimeoutMs: number;
    maxConnections: number;
  }) {
    this.handshakeTimeoutMs = init.handshakeTimeoutMs;
    this.maxConnections = init.maxConnections;
    this.relay = init.relay;
    this.http = init.http;
    this.wss = init.wss;
    this.stun = init.stun;
    this.links = init.links;
    this.address = init.address;
    const host = init.address.ip.includes(':') ? `[${init.address.ip}]` : init.address.ip;
    this.url = `${init.secure ? 'https' : 'http'}://${host}:${init.address.port}/derp`;
    this.stunAddress = init.stun?.address;
    this.startedAt = init.relay.clock.now();
    this.metrics = createMetrics(this.relay, () => ({
      stun_answered_total: this.stun?.stats().answered ?? 0,
      mesh_links_up: this.links.filter((l) => l.connected).length,
      tcp_connections: this.tcpConnections,
    }));
  }

  /** The server's node public key (sent in ServerKey and Derp-Public-Key). */
  get publicKey(): PublicKey {
    return this.relay.privateKey.publicKey;
  }

  /**
   * Binds HTTP(S) (and STUN when asked), then starts the mesh links. Rejects with the bind error; TypeError /
   * RangeError for bad options.
   */
  static async listen(opts: DerpServerOptions = {}): Promise<DerpServer> {
    const meshKey = opts.meshKey === undefined ? undefined : checkMeshKey(opts.meshKey);
    if (opts.meshWith?.length && meshKey === undefined) throw new TypeError('"meshWith" needs "meshKey"');
    if (opts.privateKey !== undefined && !(opts.privateKey instanceof PrivateKey))
      throw new TypeError('"privateKey" expected a PrivateKey');
    const rateLimit = opts.rateLimit && {
      bytesPerSec: positive(opts.rateLimit.bytesPerSec, 'rateLimit.bytesPerSec', 1),
      burst: positive(opts.rateLimit.burst, 'rateLimit.burst', 1),
    };
    const clock = opts.clock ?? systemClock;
    const handshakeTimeoutMs = positive(opts.handshakeTimeoutMs, 'handshakeTimeoutMs', DERP.HANDSHAKE_TIMEOUT_MS);
    const maxConnections = Math.floor(positive(opts.maxConnections, 'maxConnections', DERP.MAX_CONNECTIONS));
    const relay = new Relay(
      opts.privateKey ?? PrivateKey.generate(),
      {
        meshKey,
        verifyClient: checkVerifyClient(opts.verifyClient),
        rateLimit,
        queueDepth: Math.floor(positive(opts.queueDepth, 'queueDepth', DERP.SEND_QUEUE_DEPTH)),
        handshakeTimeoutMs,
        writeTimeoutMs: positive(opts.writeTimeoutMs, 'writeTimeoutMs', DERP.WRITE_TIMEOUT_MS),
        meshWriteTimeoutMs: positive(opts.meshWriteTimeoutMs, 'meshWriteTimeoutMs', DERP.MESH_WRITE_TIMEOUT_MS),
      },
      clock,
      opts.rng ?? systemRandom,
    );
    const secure = opts.tls !== undefined;
    const http = secure
      ? createHttpsServer({ cert: opts.tls!.cert, key: opts.tls!.key, handshakeTimeout: handshakeTimeoutMs })
      : createHttpServer();
    http.headersTimeout = handshakeTimeoutMs;
    http.requestTimeout = handshakeTimeoutMs;
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: DERP.WS_MAX_MESSAGE,
      handleProtocols: (protocols) => (protocols.has(DERP.WS_SUBPROTOCOL) ? DERP.WS_SUBPROTOCOL : false),
    });
    const host = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(opts.port ?? 0, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
    const bound = http.address();
    if (bound === null || typeof bound === 'string') throw new Error('DERP server bound to a pipe');
    let stun: StunServer | undefined;
    if (opts.stunPort !== undefined && opts.stunPort !== false) {
      try {
        stun = await StunServer.listen({ host, port: opts.stunPort });
      } catch (err) {
        await new Promise<void>((r) => http.close(() => r()));
        throw err;
      }
    }
    const links = (opts.meshWith ?? []).map(
      (url) =>
        new MeshLink(relay, {
          url,
          privateKey: relay.privateKey,
          meshKey: meshKey!,
          retryMs: positive(opts.meshRetryMs, 'meshRetryMs', DERP.MESH_RETRY_MS),
          clock,
          tls: opts.meshTls,
        }),
    );
    const server = new DerpServer({
      relay,
      http,
      wss,
      stun,
      links,
      address: { ip: normalizeIp(bound.address), port: bound.port },
      secure,
      handshakeTimeoutMs,
      maxConnections,
    });
    server.attach();
    for (const l of links) l.start();
    publish(channels.derpServer, () => ({ event: 'listening', url: server.url, key: server.publicKey.toString() }));
    return server;
  }

  private attach(): void {
    const { http, relay } = this;
    const secure = this.url.startsWith('https:');
    http.on('connection', (s: Socket) => {
      if (this.tcpConnections >= this.maxConnections) {
        relay.counters.connectionCapRefused++;
        s.destroy();
        return;
      }
      this.tcpConnections++;
      this.sockets.add(s);
      if (!secure) this.watchUpgrade(s);
      s.once('close', () => {
        this.tcpConnections--;
        this.sockets.delete(s);
        this.preUpgrade.delete(s);
      });
    });
    http.on('secureConnection', (s: Socket) => {
      this.sockets.add(s);
      this.watchUpgrade(s);
      s.once('close', () => {
        this.sockets.delete(s);
        this.preUpgrade.delete(s);
      });
    });
    http.on('request', (req, res) =>
      handleHttpRequest(
        {
          metrics: this.metrics,
          health: () => this.health(),
          noteUpgradeRequired: () => relay.counters.upgradeRequired++,
        },
        req,
        res,
      ),
    );
    http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(req, socket, head));
    http.on('clientError', (_err: Error, socket: Socket) => {
      // Garbage, a header timeout, an oversized request: answer 400 if the socket takes it, then destroy it — an
      // end() alone would leave it half-open for as long as the client cares to keep its side open.
      relay.counters.httpBadRequests++;
      if (socket.writable && !socket.destroyed)
        socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n', () => socket.destroy());
      else socket.destroy();
    });
    http.on('tlsClientError', () => {
      relay.counters.httpBadRequests++;
    });
    this.wss.on('headers', (headers: string[]) => {
      headers.push(`Derp-Version: ${DERP.PROTOCOL_VERSION}`, `Derp-Public-Key: ${this.publicKey.hex}`);
    });
  }

  /** Starts the accept → upgrade deadline for `s`; one sweep timer per server checks every pending socket. */
  private watchUpgrade(s: Socket): void {
    this.preUpgrade.set(s, this.relay.clock.now());
    if (this.sweeper) return;
    const every = Math.max(10, Math.min(1_000, this.handshakeTimeoutMs / 4));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref?.();
  }

  private sweep(): void {
    const cutoff = this.relay.clock.now() - this.handshakeTimeoutMs;
    for (const [s, at] of this.preUpgrade) {
      if (at > cutoff) continue;
      this.preUpgrade.delete(s);
      this.relay.counters.preUpgradeTimeouts++;
      s.destroy();
    }
    if (this.preUpgrade.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  private refuse(socket: Socket, status: number, text: string): void {
    socket.end(
      `HTTP/1.1 ${status} ${text}\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`,
      () => socket.destroy(),
    );
  }

  private onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const relay = this.relay;
    this.preUpgrade.delete(socket); // the relay's own handshake deadline takes over (or the refusal below ends it)
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      path = '';
    }
    if (path !== '/derp' && path !== '/derp/') return this.refuse(socket, 404, 'Not Found');
    if (this.closing) return this.refuse(socket, 503, 'Service Unavailable');
    const up = (req.headers.upgrade ?? '').toLowerCase();
    if (up === 'websocket') {
      const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((s) => s.trim());
      if (!offered.includes(DERP.WS_SUBPROTOCOL)) {
        relay.counters.httpBadRequests++;
        return this.refuse(socket, 400, 'Bad Request');
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        socket.setNoDelay(true);
        relay.accept(new WebSocketStream(ws, socket), encodeFrame({ type: 'serverKey', key: this.publicKey.bytes }));
      });
      return;
    }
    if (up !== 'derp') {
      relay.counters.upgradeRequired++;
      return this.refuse(socket, 426, 'Upgrade Required');
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10 * 60_000);
    if (head.length > 0) socket.unshift(head);
    // Derp-Fast-Start: the client already has our key and wants no HTTP response, only frames.
    const fast = req.headers['derp-fast-start'] === '1';
    const greeting = fast
      ? encodeFrame({ type: 'serverKey', key: this.publicKey.bytes })
      : upgradeResponse(this.publicKey);
    relay.accept(new SocketStream(socket), greeting);
  }

  private health(): Record<string, unknown> {
    const g = this.relay.gauges();
    return {
      publicKey: this.publicKey.toString(),
      uptimeSec: Math.round((this.relay.clock.now() - this.startedAt) / 1000),
      ...g,
      meshLinks: this.links.map((l) => ({ url: l.name, up: l.connected })),
      stun: this.stunAddress ?? null,
    };
  }

  /** Current gauges and a snapshot of the counters. */
  stats(): DerpServerStats {
    return {
      ...this.relay.gauges(),
      meshLinksUp: this.links.filter((l) => l.connected).length,
      counters: Object.assign(new ServerCounters(), this.relay.counters),
      stun: this.stun?.stats(),
    };
  }

  /** Stops accepting, closes mesh links, ends every client connection and the STUN server. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const l of this.links) l.stop();
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      this.preUpgrade.clear();
      this.relay.close();
      const httpClosed = new Promise<void>((r) => this.http.close(() => r()));
      for (const s of this.sockets) s.destroy();
      this.http.closeAllConnections?.();
      this.wss.close();
      await Promise.all([httpClosed, this.stun?.close()]);
      publish(channels.derpServer, () => ({ event: 'closed', url: this.url }));
    })();
    return this.closing;
  }
}
