/**
 * netcheck driver: runs the probe plan of a `NetcheckRun` over real sockets, DNS and HTTP, keeps the report
 * history for home-region selection, and returns `NetcheckReport`s (tailscale-protocols.md §4).
 *
 * Two ways to run it:
 *
 * - On the caller's socket (MagicSocket): pass `send(bytes, to)` and feed every received STUN datagram to
 *   `handleStunPacket(bytes, from)`. STUN then leaves from the data socket, so the mapping netcheck observes is the
 *   data flow's own mapping — essential for hole punching. (Or pass a `StunClient` that already runs on that
 *   socket; `ipv4CanSend`/`ipv6CanSend` are then inferred from its send-error counter.)
 * - Standalone (CLI, tools): `openStandaloneNetcheck()` binds one UDP socket per family itself.
 *
 * One driver owns one DriverTimer; everything else is the sans-IO `NetcheckRun` and `HomeRegionSelector`.
 */
import * as dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import { isIPv4, isIPv6 as isIPv6Address } from 'node:net';
import { networkInterfaces } from 'node:os';
import { ErrorCode, MeshsockError, abortError, isMeshsockError } from '../errors.js';
import { type AddrPort, formatAddrPort, ipClass, isIPv6, normalizeIp } from '../internal/addr.js';
import { type Clock, DriverTimer, systemClock } from '../internal/clock.js';
import { nodeLiteralAddress, type DerpMap, type DerpNode } from '../derp/derp-map.js';
import { HomeRegionSelector } from '../derp/home-region.js';
import { StunClient, type StunSend } from '../stun/client.js';
import { isStun } from '../stun/message.js';
import { NETCHECK } from './constants.js';
import { measureHttpLatency, type HttpLatencyFn } from './http-latency.js';
import { makeProbePlan, type HostFamilies, type IpFamily } from './plan.js';
import type { NetcheckReport } from './report.js';
import { NetcheckRun, type NetcheckAction } from './run.js';

/** Resolves a host name to one address of the family, or undefined. */
export type NetcheckLookup = (host: string, family: IpFamily) => Promise<string | undefined>;

export interface NetcheckOptions {
  /** The DERP map to measure (required; meshsock has no default map). */
  derpMap: DerpMap;
  /** Send a datagram on the caller's socket(s), routed by `to`'s family. Feed replies to `handleStunPacket`. */
  send?: StunSend;
  /** Alternatively, a STUN client already running on the caller's socket. */
  stunClient?: StunClient;
  /** Families the socket(s) can use. Default: what the host's interfaces have (`detectHostFamilies`). */
  families?: HostFamilies;
  /** Whether the OS supports IPv6 sockets at all. Default: probed once by binding `[::1]:0`. */
  osHasIPv6?: boolean;
  clock?: Clock;
  /** DNS for node host names without IP literals. Default: `dns.lookup`. */
  lookup?: NetcheckLookup;
  /** HTTP(S) latency check used when UDP is blocked. Default: `measureHttpLatency`. */
  httpLatency?: HttpLatencyFn;
  /** Measure HTTP(S) latency when no STUN reply arrives (default true). */
  httpFallback?: boolean;
  /** Wait for every region instead of stopping after 3 answered (like `tailscale netcheck --verbose`). */
  verbose?: boolean;
  /** Region to prefer whenever it is reachable. */
  forceRegion?: number;
  /** Monotonic ms of the last DERP frame per region (DerpClient.lastActivity), for home hysteresis. */
  lastDerpActivity?: (regionId: number) => number | undefined;
}

export interface GetReportOptions {
  signal?: AbortSignal;
  /** Force a full report (every region, 3 tries). */
  full?: boolean;
}

/** Families the host's interfaces can use: v4 with any non-loopback IPv4, v6 with a global-unicast IPv6. */
export function detectHostFamilies(): HostFamilies {
  let v4 = false;
  let v6 = false;
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4 = true;
      else {
        const c = ipClass(a.address);
        if (!c.linkLocal && !c.private && !c.loopback && !c.unspecified) v6 = true;
      }
    }
  }
  return { v4, v6 };
}

/** True when an IPv6 UDP socket can be bound on `[::1]:0` (Tailscale's OSHasIPv6 test). No packet is sent. */
export function probeOsHasIPv6(): Promise<boolean> {
  return new Promise((resolve) => {
    let s: dgram.Socket;
    try {
      s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    } catch {
      resolve(false);
      return;
    }
    s.once('error', () => {
      s.close();
      resolve(false);
    });
    s.bind({ address: '::1', port: 0 }, () => {
      s.close();
      resolve(true);
    });
  });
}

const defaultLookup: NetcheckLookup = async (host, family) => {
  try {
    return (await dns.lookup(host, { family })).address;
  } catch {
    return undefined;
  }
};

/**
 * Produces network reports on the caller's socket. Reports are serialised: a `getReport` while one runs returns
 * the running report's promise.
 */
export class Netcheck {
  private map: DerpMap;
  private readonly clock: Clock;
  private readonly stun: StunClient;
  private readonly ownsStun: boolean;
  private readonly selector: HomeRegionSelector;
  private readonly lookup: NetcheckLookup;
  private readonly httpLatency: HttpLatencyFn;
  private familiesOpt: HostFamilies | undefined;
  private osHasIPv6Opt: boolean | undefined;
  private running: Promise<NetcheckReport> | undefined;
  private run: NetcheckRun | undefined;
  private last: NetcheckReport | undefined;
  private lastFullAt = -Infinity;
  private nextFull = true;
  private closed = false;

  constructor(private readonly opts: NetcheckOptions) {
    if (!opts?.derpMap)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, 'netcheck needs a DERP map (there is no default)');
    this.map = opts.derpMap;
    this.clock = opts.clock ?? systemClock;
    if (opts.stunClient) {
      this.stun = opts.stunClient;
      this.ownsStun = false;
    } else if (opts.send) {
      const send = opts.send;
      const noteSent = (to: AddrPort): void => this.run?.handleStunSent(isIPv6(to.ip) ? 6 : 4);
      this.stun = new StunClient({
        clock: this.clock,
        send: (bytes, to) => {
          const r = send(bytes, to);
          if (r && typeof (r as Promise<unknown>).then === 'function')
            return (r as Promise<unknown>).then(() => noteSent(to));
          noteSent(to);
          return r;
        },
      });
      this.ownsStun = true;
    } else {
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        'netcheck needs "send" or "stunClient" (or use openStandaloneNetcheck for its own sockets)',
      );
    }
    this.selector = new HomeRegionSelector(opts.forceRegion ? { forceRegion: opts.forceRegion } : {});
    this.lookup = opts.lookup ?? defaultLookup;
    this.httpLatency = opts.httpLatency ?? measureHttpLatency;
    this.familiesOpt = opts.families;
    this.osHasIPv6Opt = opts.osHasIPv6;
  }

  /** The most recent report, if any. */
  get lastReport(): NetcheckReport | undefined {
    return this.last;
  }

  /** The home region the last report chose (0 if none yet). */
  get preferredDerp(): number {
    return this.selector.previous;
  }

  /** Best latency per region over the 5 min history (ms). */
  recentRegionLatency(): Map<number, number> {
    return this.selector.bestRecentLatency();
  }

  /** Replaces the DERP map; the next report is a full one. */
  setDerpMap(map: DerpMap): void {
    this.map = map;
    this.nextFull = true;
  }

  /** Makes the next report a full one (e.g. after a link change). */
  makeNextReportFull(): void {
    this.nextFull = true;
  }

  /** Feeds a datagram from the caller's socket; true when it answered one of netcheck's STUN probes. */
  handleStunPacket(bytes: Uint8Array, from: AddrPort): boolean {
    return this.ownsStun && isStun(bytes) && this.stun.handlePacket(bytes, from);
  }

  /** Runs one report (full or incremental). Rejects with ABORTED on `signal`, CLOSED after `close()`. */
  getReport(opts: GetReportOptions = {}): Promise<NetcheckReport> {
    if (this.closed) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'netcheck is closed'));
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    if (opts.full) this.nextFull = true;
    this.running ??= this.runReport(opts.signal).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Stops a running report (it rejects with CLOSED) and, in send mode, the STUN client. */
  close(): void {
    this.closed = true;
    if (this.ownsStun) this.stun.close();
  }

  private async runReport(signal: AbortSignal | undefined): Promise<NetcheckReport> {
    const families = this.familiesOpt ?? detectHostFamilies();
    this.osHasIPv6Opt ??= await probeOsHasIPv6();
    const osHasIPv6 = this.osHasIPv6Opt;
    const start = this.clock.now();
    const full = this.nextFull || this.last === undefined || start - this.lastFullAt > NETCHECK.FULL_REPORT_INTERVAL_MS;
    const map = this.map;
    const plan = makeProbePlan(map, families, full ? undefined : this.last, this.selector.previous);
    const run = new NetcheckRun(plan, map, {
      start,
      full,
      osHasIPv6,
      enoughRegions: this.opts.verbose ? NETCHECK.ENOUGH_REGIONS_VERBOSE : NETCHECK.ENOUGH_REGIONS,
      httpFallback: this.opts.httpFallback ?? true,
    });
    this.run = run;
    if (full) {
      this.nextFull = false;
      this.lastFullAt = start;
    }
    const inflight = new Map<number, AbortController>();
    const dnsCache = new Map<string, Promise<string | undefined>>();

    return new Promise<NetcheckReport>((resolve, reject) => {
      let finished = false;
      const timer = new DriverTimer(this.clock, () => step(run.handleTimeout(this.clock.now())));
      const stopAll = (): void => {
        timer.stop();
        for (const ac of inflight.values()) ac.abort();
        inflight.clear();
        signal?.removeEventListener('abort', onAbort);
        if (this.run === run) this.run = undefined;
      };
      const onAbort = (): void => {
        if (finished) return;
        finished = true;
        stopAll();
        reject(abortError(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });

      const resolveServer = (node: DerpNode, family: IpFamily): Promise<string | undefined> => {
        const lit = nodeLiteralAddress(node, family);
        if (lit !== undefined) return Promise.resolve(normalizeIp(lit));
        const key = `${family}/${node.hostName}`;
        let p = dnsCache.get(key);
        if (!p) dnsCache.set(key, (p = this.lookup(node.hostName, family)));
        return p;
      };

      const startStun = (a: Extract<NetcheckAction, { kind: 'stun' }>): void => {
        const ac = new AbortController();
        inflight.set(a.id, ac);
        const { probe } = a;
        const errorsBefore = this.stun.sendErrors;
        void resolveServer(probe.node, probe.family)
          .then(async (ip) => {
            if (ac.signal.aborted) return;
            if (ip === undefined) {
              inflight.delete(a.id);
              step(run.handleStunFailure(a.id, false, this.clock.now()));
              return;
            }
            const server = { ip, port: probe.node.stunPort };
            try {
              const res = await this.stun.query(server, {
                signal: ac.signal,
                timeoutMs: Math.max(0, a.deadline - this.clock.now()),
                maxTransmissions: 1,
              });
              inflight.delete(a.id);
              step(run.handleStunReply(a.id, server, res.mapped, res.rttMs, this.clock.now()));
            } catch (err) {
              inflight.delete(a.id);
              if (ac.signal.aborted) return;
              // With our own client, sends are counted exactly by the wrapped `send`; with a borrowed client,
              // a query that ended without new send errors is taken as sent.
              const sent =
                !this.ownsStun &&
                (isMeshsockError(err, ErrorCode.TIMEOUT) || isMeshsockError(err, ErrorCode.STUN)) &&
                this.stun.sendErrors === errorsBefore;
              step(run.handleStunFailure(a.id, sent, this.clock.now()));
            }
          })
          .catch(() => undefined);
      };

      const startHttp = (a: Extract<NetcheckAction, { kind: 'http' }>): void => {
        const ac = new AbortController();
        inflight.set(a.id, ac);
        const timeoutMs = Math.max(0, Math.min(NETCHECK.HTTPS_PROBE_TIMEOUT_MS, a.deadline - this.clock.now()));
        this.httpLatency(a.region, { signal: ac.signal, timeoutMs }).then(
          (r) => {
            inflight.delete(a.id);
            if (!ac.signal.aborted) step(run.handleHttpResult(a.id, r.ms, r.family, this.clock.now()));
          },
          () => {
            inflight.delete(a.id);
            if (!ac.signal.aborted) step(run.handleHttpResult(a.id, undefined, undefined, this.clock.now()));
          },
        );
      };

      const finish = (): void => {
        if (finished) return;
        finished = true;
        stopAll();
        const now = this.clock.now();
        const decision = this.selector.addReport(
          {
            regionLatency: run.builder.regionLatency(),
            reportStart: start,
            lastDerpActivity: this.opts.lastDerpActivity,
          },
          map,
          now,
        );
        const report = run.builder.finish(new Date(), now - start, decision.regionId, decision.reason);
        this.last = report;
        resolve(report);
      };

      const step = (actions: NetcheckAction[]): void => {
        if (finished) return;
        if (this.closed) {
          finished = true;
          stopAll();
          reject(new MeshsockError(ErrorCode.CLOSED, 'netcheck closed during a report'));
          return;
        }
        for (const a of actions) {
          switch (a.kind) {
            case 'stun':
              startStun(a);
              break;
            case 'http':
              startHttp(a);
              break;
            case 'cancel':
              for (const id of a.ids) {
                inflight.get(id)?.abort();
                inflight.delete(id);
              }
              break;
            case 'done':
              finish();
              return;
          }
        }
        timer.armAt(run.pollTimeout());
      };

      step(run.handleTimeout(start));
    });
  }
}

/** A netcheck on its own UDP sockets (one per family), for the CLI and tools. */
export interface StandaloneNetcheck {
  readonly netcheck: Netcheck;
  /** Local addresses of the sockets it bound. */
  readonly local: { readonly v4: AddrPort | undefined; readonly v6: AddrPort | undefined };
  getReport(opts?: GetReportOptions): Promise<NetcheckReport>;
  /** Stops the netcheck and closes the sockets. Idempotent. */
  close(): Promise<void>;
}

export interface StandaloneNetcheckOptions extends Omit<NetcheckOptions, 'send' | 'stunClient'> {
  /** Local IPv4 address to bind (default 0.0.0.0). */
  bindAddress4?: string;
  /** Local IPv6 address to bind (default ::). */
  bindAddress6?: string;
  /** Local port for both sockets (default 0: any). */
  bindPort?: number;
}

/** Binds one UDP socket; resolves with it, or with the bind error (never rejects). */
function bindSocket(type: 'udp4' | 'udp6', address: string, port: number): Promise<dgram.Socket | Error> {
  return new Promise((resolve) => {
    let s: dgram.Socket;
    try {
      s = dgram.createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
    } catch (err) {
      resolve(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    const onError = (err: Error): void => {
      s.close();
      resolve(err);
    };
    s.once('error', onError);
    s.bind({ address, port }, () => {
      s.off('error', onError);
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

/**
 * Opens one UDP socket per family (IPv4 always tried; IPv6 when the OS has it) and a Netcheck that sends its STUN
 * probes on them. Close it when done.
 */
export async function openStandaloneNetcheck(opts: StandaloneNetcheckOptions): Promise<StandaloneNetcheck> {
  const port = opts.bindPort ?? 0;
  // An address or port the caller asked for is bound exactly or not at all: never looked up as a name, never
  // replaced by a silent fallback (a report over no socket would say "UDP: false" for a typo).
  if (opts.bindAddress4 !== undefined && !isIPv4(opts.bindAddress4))
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `not an IPv4 address: ${JSON.stringify(opts.bindAddress4)}`);
  if (opts.bindAddress6 !== undefined && !isIPv6Address(opts.bindAddress6))
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `not an IPv6 address: ${JSON.stringify(opts.bindAddress6)}`);
  const r4 = await bindSocket('udp4', opts.bindAddress4 ?? '0.0.0.0', port);
  const r6 = await bindSocket('udp6', opts.bindAddress6 ?? '::', port);
  const s4 = r4 instanceof Error ? undefined : r4;
  const s6 = r6 instanceof Error ? undefined : r6;
  const required: Array<[dgram.Socket | Error, string, boolean]> = [
    [r4, opts.bindAddress4 ?? '0.0.0.0', opts.bindAddress4 !== undefined || port !== 0],
    [r6, opts.bindAddress6 ?? '::', opts.bindAddress6 !== undefined],
  ];
  for (const [r, address, asked] of required) {
    if (!(r instanceof Error) || !asked) continue;
    s4?.close();
    s6?.close();
    const code = (r as NodeJS.ErrnoException).code;
    throw new MeshsockError(
      ErrorCode.BIND,
      `cannot bind UDP ${formatAddrPort({ ip: address, port })}: ${code ?? r.message}`,
      { cause: r },
    );
  }
  if (!s4 && !s6) throw new MeshsockError(ErrorCode.BIND, 'netcheck: could not bind a UDP socket for IPv4 or IPv6');
  const detected = opts.families ?? detectHostFamilies();
  const families: HostFamilies = { v4: detected.v4 && !!s4, v6: detected.v6 && !!s6 };
  const sendOn = (bytes: Uint8Array, to: AddrPort): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = isIPv6(to.ip) ? s6 : s4;
      if (!s) {
        reject(new MeshsockError(ErrorCode.BIND, `no IPv${isIPv6(to.ip) ? 6 : 4} socket`));
        return;
      }
      s.send(bytes, to.port, to.ip, (err) => (err ? reject(err) : resolve()));
    });
  const netcheck = new Netcheck({ ...opts, families, osHasIPv6: opts.osHasIPv6 ?? !!s6, send: sendOn });
  const onMessage = (msg: Buffer, rinfo: dgram.RemoteInfo): void => {
    const b = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    if (isStun(b)) netcheck.handleStunPacket(b, { ip: normalizeIp(rinfo.address), port: rinfo.port });
  };
  s4?.on('message', onMessage);
  s6?.on('message', onMessage);
  const addr = (s: dgram.Socket | undefined): AddrPort | undefined => {
    if (!s) return undefined;
    const a = s.address();
    return { ip: normalizeIp(a.address), port: a.port };
  };
  let closing: Promise<void> | undefined;
  return {
    netcheck,
    local: { v4: addr(s4), v6: addr(s6) },
    getReport: (o) => netcheck.getReport(o),
    close() {
      closing ??= (async () => {
        netcheck.close();
        await Promise.all([s4, s6].map((s) => (s ? new Promise<void>((r) => s.close(() => r())) : Promise.resolve())));
      })();
      return closing;
    },
  };
}
