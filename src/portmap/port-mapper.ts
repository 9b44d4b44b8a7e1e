/**
 * PortMapper: the driver of the port-mapping core. It owns one UDP socket connected to gateway:5351 (NAT-PMP and
 * PCP), one UDP socket for SSDP, the UPnP HTTP requests and one DriverTimer; all decisions are the sans-IO
 * `PortmapCore`'s (core.ts). Give it the UDP port your application (the virtual socket) is bound to; it keeps a
 * public endpoint mapped to it while it runs and releases it on `close()`.
 *
 *   const pm = new PortMapper({ internalPort: 41641 });
 *   pm.on('mapping', (m, previous, reason) => …);     // m undefined = lost
 *   await pm.start();
 *   const m = await pm.waitForMapping({ timeoutMs: 3000 });   // { external: { ip, port }, protocol, expiresAt, … }
 *   await pm.close();                                          // lifetime 0 / DeletePortMapping
 *
 * Gateway: `gateway` if given (it must be IPv4 and private, shared or loopback), else the IPv4 default gateway
 * from /proc/net/route, used only when it is an RFC 1918 address; otherwise the mapper stays `disabled` and says
 * why in `status()`. Nothing is sent anywhere but that gateway (and the SSDP group on its LAN). The sockets are
 * unref'd: a port mapper never keeps the process alive, except while `close()` waits for the release.
 */
import * as dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import { type AddrPort, formatAddrPort, normalizeIp, parseIPv4 } from '../internal/addr.js';
import { asU8 } from '../internal/bytes.js';
import { type Clock, DriverTimer, type RandomSource, systemClock } from '../internal/clock.js';
import { Counters, channels, publish } from '../internal/diagnostics.js';
import { NAT_PMP, PORTMAP_PROTOCOLS, type PortmapProtocol, UPNP } from './constants.js';
import { PortmapCore } from './core.js';
import { PortmapError, PortmapFailure } from './errors.js';
import { defaultGatewayFromRoutes, explicitGatewayProblem, isRfc1918 } from './gateway.js';
import { httpRequest } from './http.js';
import type { MappingChangeReason, PortMapping, PortmapAction, PortmapCoreStatus, PortmapPhase } from './types.js';

export interface PortMapperOptions {
  /** The local UDP port to map (your socket's port). */
  internalPort: number;
  /** Our IPv4 address on the gateway's LAN. Default: the source address the kernel picks towards the gateway. */
  localAddress?: string;
  /**
   * The gateway (IPv4; private RFC 1918, shared RFC 6598 or loopback). Default: the IPv4 default gateway from
   * /proc/net/route, only when it is an RFC 1918 address.
   */
  gateway?: string;
  /** Protocols to use, in order of preference. Default `['pmp', 'pcp', 'upnp']`. */
  protocols?: readonly PortmapProtocol[];
  /** Requested mapping lifetime in seconds. Default 7200. */
  lifetimeS?: number;
  /** Time source; `systemClock` by default. `expiresAt` values are on this clock. */
  clock?: Clock;
  /** Nonces and random ports; crypto random by default. */
  rng?: RandomSource;
}

/** Events of a PortMapper. */
export interface PortMapperEvents {
  /** The mapping was created, changed (new external address) or lost (`mapping` undefined). */
  mapping: [mapping: PortMapping | undefined, previous: PortMapping | undefined, reason: MappingChangeReason];
}

/** Counter names of the driver (the core's are merged into `status().counters`). */
export type PortMapperCounter = 'sendErrors' | 'socketErrors' | 'httpRequests' | 'httpRefusedUrl';

/** `status()`: where the mapper is, what the gateway offers, the mapping, the last error, counters. */
export interface PortMapperStatus {
  /** `disabled` when there is no usable gateway (see `disabledReason`); otherwise the core's phase. */
  readonly phase: PortmapPhase | 'disabled';
  readonly disabledReason: string | undefined;
  readonly gateway: string | undefined;
  readonly localAddress: string | undefined;
  readonly internalPort: number;
  readonly protocols: readonly PortmapProtocol[];
  readonly services: PortmapCoreStatus['services'] | undefined;
  readonly mapping: PortMapping | undefined;
  readonly lastError: PortmapError | undefined;
  readonly nextWakeInMs: number | undefined;
  readonly counters: Record<string, number>;
}

interface Waiter {
  resolve(m: PortMapping): void;
  reject(e: unknown): void;
}

/** Reads the default gateway from /proc/net/route; undefined when there is none or no /proc. Never throws. */
export function readDefaultGateway(): string | undefined {
  try {
    return defaultGatewayFromRoutes(readFileSync('/proc/net/route', 'utf8'), endianness() === 'LE');
  } catch {
    return undefined;
  }
}

/** Keeps a public UDP endpoint mapped to a local port through NAT-PMP, PCP or UPnP-IGD. */
export class PortMapper extends EventEmitter<PortMapperEvents> {
  /** Driver counters (socket and HTTP); `status().counters` adds the core's. */
  readonly counters = new Counters<PortMapperCounter>();
  private readonly opts: PortMapperOptions;
  private readonly clock: Clock;
  private readonly timer: DriverTimer;
  private core: PortmapCore | undefined;
  private pmpSock: dgram.Socket | undefined;
  private ssdpSock: dgram.Socket | undefined;
  private readonly http = new Map<number, AbortController>();
  private readonly waiters = new Set<Waiter>();
  private disabledReason: string | undefined;
  private gatewayIp: string | undefined;
  private startPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;
  private onCoreClosed: (() => void) | undefined;
  private closed = false;

  /** Throws BAD_CONFIG for an unusable explicit gateway or local address; RangeError/TypeError for bad values. */
  constructor(opts: PortMapperOptions) {
    super();
    if (!Number.isInteger(opts?.internalPort) || opts.internalPort < 1 || opts.internalPort > 65535)
      throw new RangeError(`"internalPort" must be an integer 1..65535, got ${String(opts?.internalPort)}`);
    if (opts.gateway !== undefined) {
      const problem = explicitGatewayProblem(opts.gateway);
      if (problem) throw new MeshsockError(ErrorCode.BAD_CONFIG, problem);
    }
    if (opts.localAddress !== undefined && parseIPv4(opts.localAddress) === undefined)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `localAddress ${opts.localAddress} is not an IPv4 address`);
    const protocols = opts.protocols ?? PORTMAP_PROTOCOLS;
    if (!Array.isArray(protocols) || protocols.length === 0 || protocols.some((p) => !PORTMAP_PROTOCOLS.includes(p)))
      throw new TypeError(`"protocols" must be a non-empty list of ${PORTMAP_PROTOCOLS.join(', ')}`);
    if (
      opts.lifetimeS !== undefined &&
      (!Number.isInteger(opts.lifetimeS) || opts.lifetimeS < 1 || opts.lifetimeS > 0x7fffffff)
    )
      throw new RangeError(`"lifetimeS" must be a positive integer, got ${opts.lifetimeS}`);
    this.opts = { ...opts, protocols };
    this.clock = opts.clock ?? systemClock;
    this.timer = new DriverTimer(this.clock, () => this.onTimer());
  }

  /** The gateway in use (after `start()`), or undefined. */
  get gateway(): string | undefined {
    return this.gatewayIp;
  }

  /**
   * Opens the sockets and starts probing. Resolves once the probe is sent (not when a mapping exists: use the
   * `mapping` event or `waitForMapping`). Without a usable gateway it resolves too, and the mapper is `disabled`.
   * Rejects with BIND when a socket cannot be opened, CLOSED after `close()`. Idempotent.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'port mapper is closed'));
    this.startPromise ??= this.open();
    return this.startPromise;
  }

  /** The current mapping, or undefined. */
  mapping(): PortMapping | undefined {
    return this.core?.mapping();
  }

  /**
   * Resolves with the mapping as soon as there is one. Rejects with the PortmapError of the attempt when this
   * round of probing and mapping fails (or at once when `disabled`), TIMEOUT after `timeoutMs`, ABORTED, CLOSED.
   */
  waitForMapping(opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<PortMapping> {
    const m = this.mapping();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'port mapper is closed'));
    if (this.disabledReason)
      return Promise.reject(new PortmapError(PortmapFailure.NO_SERVICE, undefined, this.disabledReason));
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    return new Promise<PortMapping>((resolve, reject) => {
      let cancelTimer: (() => void) | undefined;
      const onAbort = (): void => finish(() => reject(abortError(opts.signal!)));
      const finish = (f: () => void): void => {
        this.waiters.delete(w);
        cancelTimer?.();
        opts.signal?.removeEventListener('abort', onAbort);
        f();
      };
      const w: Waiter = { resolve: (v) => finish(() => resolve(v)), reject: (e) => finish(() => reject(e)) };
      this.waiters.add(w);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      if (opts.timeoutMs !== undefined)
        cancelTimer = this.clock.setTimer(
          () => w.reject(new MeshsockError(ErrorCode.TIMEOUT, `no port mapping within ${opts.timeoutMs} ms`)),
          opts.timeoutMs,
        );
    });
  }

  /** Where the mapper is and why (see PortMapperStatus). */
  status(): PortMapperStatus {
    const now = this.clock.now();
    const core = this.core?.status(now);
    return {
      phase: this.disabledReason ? 'disabled' : (core?.phase ?? (this.closed ? 'closed' : 'idle')),
      disabledReason: this.disabledReason,
      gateway: this.gatewayIp,
      localAddress: core?.localAddress,
      internalPort: this.opts.internalPort,
      protocols: this.opts.protocols!,
      services: core?.services,
      mapping: core?.mapping,
      lastError: core?.lastError,
      nextWakeInMs: core?.nextWakeInMs,
      counters: { ...core?.counters, ...this.counters.snapshot() },
    };
  }

  /**
   * Releases the mapping (NAT-PMP/PCP lifetime 0, UPnP DeletePortMapping; waits at most ~1 s for the gateway),
   * then closes the sockets. Pending `waitForMapping` calls reject with CLOSED. Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closePromise ??= this.shutdown();
    return this.closePromise;
  }

  // ---- internals ----------------------------------------------------------------------------------------------

  private async open(): Promise<void> {
    const o = this.opts;
    const gw = o.gateway ?? readDefaultGateway();
    if (gw === undefined || (o.gateway === undefined && !isRfc1918(gw))) {
      this.disabledReason =
        gw === undefined
          ? 'no IPv4 default gateway'
          : `default gateway ${gw} is not a private (RFC 1918) address: no home router to ask`;
      publish(channels.portmap, () => ({ event: 'disabled', reason: this.disabledReason }));
      const err = new PortmapError(PortmapFailure.NO_SERVICE, undefined, this.disabledReason);
      for (const w of [...this.waiters]) w.reject(err);
      return;
    }
    this.gatewayIp = gw;
    let local: string;
    try {
      this.pmpSock = await this.bind(o.localAddress);
      await new Promise<void>((resolve, reject) => {
        this.pmpSock!.once('error', reject);
        this.pmpSock!.connect(NAT_PMP.SERVER_PORT, gw, (err?: Error) => {
          this.pmpSock!.off('error', reject);
          if (err) reject(err);
          else resolve();
        });
      });
      local = o.localAddress ?? normalizeIp(this.pmpSock.address().address);
      if (o.protocols!.includes('upnp')) this.ssdpSock = await this.bind(local);
    } catch (err) {
      this.closeSockets();
      throw new MeshsockError(ErrorCode.BIND, `port mapper: cannot open a UDP socket towards ${gw}`, { cause: err });
    }
    if (this.closed) return this.closeSockets();
    this.pmpSock.on('message', (msg, r) => this.onDatagram('pmp', msg, r));
    this.pmpSock.on('error', () => this.counters.inc('socketErrors'));
    this.pmpSock.unref();
    const core = new PortmapCore({
      internalPort: o.internalPort,
      gateway: gw,
      localAddress: local,
      protocols: o.protocols!,
      ...(o.lifetimeS !== undefined ? { lifetimeS: o.lifetimeS } : {}),
      ...(o.rng ? { rng: o.rng } : {}),
    });
    const ssdp = this.ssdpSock;
    if (ssdp) {
      ssdp.on('message', (msg, r) => this.onDatagram('ssdp', msg, r));
      ssdp.on('error', () => this.counters.inc('socketErrors'));
      ssdp.unref();
      if (core.multicast) {
        try {
          ssdp.setMulticastTTL(UPNP.MULTICAST_TTL);
          ssdp.setMulticastInterface(local);
        } catch {
          this.counters.inc('socketErrors');
        }
      }
    }
    this.core = core;
    this.run(core.start(this.clock.now()));
  }

  private async bind(address: string | undefined): Promise<dgram.Socket> {
    const s = dgram.createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind({ port: 0, ...(address ? { address } : {}) }, () => {
        s.off('error', reject);
        resolve();
      });
    });
    return s;
  }

  private onDatagram(socket: 'pmp' | 'ssdp', msg: Buffer, r: dgram.RemoteInfo): void {
    if (!this.core) return;
    this.run(
      this.core.handleDatagram(socket, asU8(msg), { ip: normalizeIp(r.address), port: r.port }, this.clock.now()),
    );
  }

  private onTimer(): void {
    if (this.core) this.run(this.core.handleTimeout(this.clock.now()));
  }

  /** Carries out the core's actions, re-arms the timer, then emits events (so a listener may call close()). */
  private run(actions: PortmapAction[]): void {
    const core = this.core!;
    const later: Array<() => void> = [];
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          this.sendDatagram(a.socket, a.bytes, a.to);
          break;
        case 'http':
          this.startHttp(a);
          break;
        case 'mapping':
          publish(channels.portmap, () => ({
            event: 'mapping',
            gateway: core.gateway,
            mapping: a.mapping && { ...a.mapping, external: formatAddrPort(a.mapping.external) },
            previous: a.previous && formatAddrPort(a.previous.external),
            reason: a.reason,
          }));
          later.push(() => {
            this.emit('mapping', a.mapping, a.previous, a.reason);
            if (a.mapping) for (const w of [...this.waiters]) w.resolve(a.mapping);
          });
          break;
        case 'event':
          publish(channels.portmap, () => ({ event: a.event, gateway: core.gateway, ...a.detail }));
          if (a.event === 'waiting') {
            const err = core.status(this.clock.now()).lastError;
            later.push(() => {
              for (const w of [...this.waiters])
                w.reject(err ?? new PortmapError(PortmapFailure.NO_SERVICE, undefined, 'no port mapping'));
            });
          }
          break;
        case 'closed':
          publish(channels.portmap, () => ({ event: 'closed', gateway: core.gateway }));
          later.push(() => this.onCoreClosed?.());
          break;
      }
    }
    if (!this.closed || this.onCoreClosed) this.timer.armAt(core.pollTimeout());
    for (const f of later) f();
  }

  private sendDatagram(socket: 'pmp' | 'ssdp', bytes: Uint8Array, to: AddrPort): void {
    const gw = this.gatewayIp;
    const cb = (err: Error | null): void => {
      if (err) this.counters.inc('sendErrors');
    };
    try {
      if (socket === 'pmp') {
        // Connected to gateway:5351: it cannot reach anyone else.
        if (!this.pmpSock || to.ip !== gw) return this.counters.inc('sendErrors');
        this.pmpSock.send(bytes, cb);
      } else {
        // Only the gateway, or the SSDP group when the gateway is on a private LAN (never for a loopback gateway).
        const group = to.ip === UPNP.SSDP_MULTICAST_IP && this.core?.multicast === true;
        if (!this.ssdpSock || (to.ip !== gw && !group)) return this.counters.inc('sendErrors');
        this.ssdpSock.send(bytes, to.port, to.ip, cb);
      }
    } catch {
      this.counters.inc('sendErrors');
    }
  }

  private startHttp(a: Extract<PortmapAction, { kind: 'http' }>): void {
    const core = this.core!;
    let host = '';
    try {
      host = new URL(a.url).hostname;
    } catch {
      host = '';
    }
    const deliver = (res: Parameters<PortmapCore['handleHttp']>[1]): void => {
      this.http.delete(a.id);
      if (!this.core || (this.closed && !this.onCoreClosed)) return;
      this.run(core.handleHttp(a.id, res, this.clock.now()));
    };
    if (host !== this.gatewayIp) {
      this.counters.inc('httpRefusedUrl');
      queueMicrotask(() => deliver({ ok: false, error: `refusing ${a.url}: not the gateway` }));
      return;
    }
    const ac = new AbortController();
    this.http.set(a.id, ac);
    this.counters.inc('httpRequests');
    void httpRequest({
      method: a.method,
      url: a.url,
      headers: a.headers,
      body: a.body,
      timeoutMs: a.timeoutMs,
      maxBytes: a.maxBytes,
      localAddress: core.localAddress,
      signal: ac.signal,
    }).then(deliver);
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    if (this.startPromise) await this.startPromise.catch(() => undefined);
    const core = this.core;
    if (core) {
      await new Promise<void>((resolve) => {
        this.onCoreClosed = resolve;
        // Keep the process alive until the release is answered or times out.
        this.pmpSock?.ref();
        this.run(core.close(this.clock.now()));
      });
      this.onCoreClosed = undefined;
    }
    this.timer.stop();
    for (const ac of this.http.values()) ac.abort();
    this.http.clear();
    this.closeSockets();
    for (const w of [...this.waiters]) w.reject(new MeshsockError(ErrorCode.CLOSED, 'port mapper closed'));
  }

  private closeSockets(): void {
    for (const s of [this.pmpSock, this.ssdpSock]) {
      try {
        s?.close();
      } catch {
        // already closed
      }
    }
    this.pmpSock = this.ssdpSock = undefined;
  }
}
