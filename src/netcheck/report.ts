/**
 * The netcheck report and its sans-IO builder (tailscale-protocols.md §4.3, Tailscale's `netcheck.Report` and
 * `reportState.addNodeLatency`).
 *
 * Feed the builder what the probes saw — STUN replies (`addStun`), send outcomes (`noteSend`), HTTP(S) latencies
 * (`addHttpLatency`) — and `finish()` yields the `NetcheckReport`. It never reads a clock or touches a socket.
 *
 * What each field means:
 * - `udp`: some STUN reply arrived. `ipv4`/`ipv6`: a STUN reply arrived over that family (or, with UDP blocked, an
 *   HTTP(S) latency check reached the node over it). `ipv4CanSend`/`ipv6CanSend`: a STUN request left the socket.
 * - `globalV4`/`globalV6`: the first mapping seen per family; the `…Counters` count every mapping seen.
 * - `mappingVariesByDestIP` (IPv4 only): true once two STUN servers (different server addresses) report different
 *   mappings — an endpoint-dependent ("hard") NAT; false once two servers agree; undefined with fewer than two
 *   servers answering. Two replies from the *same* server say nothing about this and are not compared (Tailscale
 *   compares any two replies; we require distinct servers, which cannot be fooled by retries to one server).
 * - latencies keep the minimum per region, overall and per family.
 * - `portMapping`: meshsock's netcheck does not probe UPnP / NAT-PMP / PCP (that is `src/portmap`'s job), so
 *   `upnp`, `pmp`, `pcp` stay undefined ("not checked") and `portMapping.reason` says so.
 * - `icmpv4`: ICMP latency needs raw-socket privileges Node does not have; never checked (undefined).
 */
import { formatAddrPort, parseAddrPort, type AddrPort } from '../internal/addr.js';
import type { HomeDecisionReason } from '../derp/home-region.js';
import type { IpFamily } from './plan.js';

/** The finished network report. Latencies are milliseconds. */
export interface NetcheckReport {
  /** Wall-clock time the report finished. */
  readonly time: Date;
  /** How long the report took (ms). */
  readonly durationMs: number;
  /** Full report (every region, 3 tries) or incremental (fastest regions + home). */
  readonly full: boolean;
  readonly udp: boolean;
  readonly ipv4: boolean;
  readonly ipv6: boolean;
  readonly ipv4CanSend: boolean;
  readonly ipv6CanSend: boolean;
  /** An IPv6 socket could be bound (`[::1]:0`) — the OS supports IPv6 even if the network does not. */
  readonly osHasIPv6: boolean;
  /** Never checked (ICMP needs raw sockets); always undefined. */
  readonly icmpv4: undefined;
  readonly mappingVariesByDestIP: boolean | undefined;
  /** Not checked by netcheck; always undefined (see `portMapping.reason`). */
  readonly upnp: undefined;
  readonly pmp: undefined;
  readonly pcp: undefined;
  readonly portMapping: { readonly checked: false; readonly reason: string };
  /** Captive-portal detection is not implemented; always undefined. */
  readonly captivePortal: undefined;
  /** Home region chosen from this report and the history (0 = unknown). */
  readonly preferredDerp: number;
  /** Which home-selection rule decided `preferredDerp`. */
  readonly preferredDerpReason: HomeDecisionReason;
  readonly regionLatency: ReadonlyMap<number, number>;
  readonly regionV4Latency: ReadonlyMap<number, number>;
  readonly regionV6Latency: ReadonlyMap<number, number>;
  /** Regions whose latency came from HTTP(S) (UDP blocked) rather than STUN. */
  readonly httpLatencyRegions: ReadonlySet<number>;
  readonly globalV4: AddrPort | undefined;
  readonly globalV6: AddrPort | undefined;
  /** How often each v4 mapping ("ip:port") was seen. */
  readonly globalV4Counters: ReadonlyMap<string, number>;
  readonly globalV6Counters: ReadonlyMap<string, number>;
}

/** Why `upnp`, `pmp` and `pcp` are undefined in every report. */
export const PORTMAP_NOT_CHECKED =
  "not checked: netcheck does not probe UPnP, NAT-PMP or PCP (meshsock's port mapper does that separately)";

/** One STUN reply as the builder needs it. */
export interface StunObservation {
  readonly regionId: number;
  /** The STUN server the request went to (distinguishes servers for MappingVariesByDestIP). */
  readonly server: AddrPort;
  readonly family: IpFamily;
  /** Our address as the server saw it. */
  readonly mapped: AddrPort;
  readonly rttMs: number;
}

function setMin(m: Map<number, number>, id: number, d: number): void {
  const prev = m.get(id);
  if (prev === undefined || d < prev) m.set(id, d);
}

/**
 * Accumulates probe results for one report. Pure state: every method is synchronous and clock-free. `addStun`
 * returns true the moment `enoughRegions` regions have answered, so the caller can start its early-stop timer
 * (`stopAfterMs` tells it how long).
 */
export class ReportBuilder {
  private udp = false;
  private ipv4 = false;
  private ipv6 = false;
  private ipv4CanSend = false;
  private ipv6CanSend = false;
  private mappingVaries: boolean | undefined;
  private readonly latency = new Map<number, number>();
  private readonly v4Latency = new Map<number, number>();
  private readonly v6Latency = new Map<number, number>();
  private readonly httpRegions = new Set<number>();
  private globalV4: AddrPort | undefined;
  private globalV4Server: string | undefined;
  private globalV6: AddrPort | undefined;
  private readonly v4Counters = new Map<string, number>();
  private readonly v6Counters = new Map<string, number>();

  constructor(
    readonly full: boolean,
    readonly osHasIPv6: boolean,
    private readonly enoughRegions: number,
  ) {}

  /** True once any STUN reply arrived. */
  get anyUdp(): boolean {
    return this.udp;
  }

  /** Regions with a latency so far. */
  get regionsAnswered(): number {
    return this.latency.size;
  }

  hasRegionLatency(regionId: number): boolean {
    return this.latency.has(regionId);
  }

  /** Early-stop delay once enough regions answered: the slowest latency so far, doubled for full reports. */
  get stopAfterMs(): number {
    let max = 0;
    for (const d of this.latency.values()) max = Math.max(max, d);
    return this.full ? 2 * max : max;
  }

  /**
   * Would one more probe of this region and family add information? Yes for a region without a latency, for the
   * first IPv6 result, and for IPv4 while MappingVariesByDestIP is still unknown (Tailscale's `probeWouldHelp`).
   */
  probeWouldHelp(regionId: number, family: IpFamily): boolean {
    if (!this.latency.has(regionId)) return true;
    if (family === 6 && this.v6Latency.size === 0) return true;
    if (family === 4 && this.mappingVaries === undefined) return true;
    return false;
  }

  /** Records whether a STUN request could be sent over the family. */
  noteSend(family: IpFamily, ok: boolean): void {
    if (!ok) return;
    if (family === 4) this.ipv4CanSend = true;
    else this.ipv6CanSend = true;
  }

  /** Records a STUN reply. Returns true when this reply made the report reach `enoughRegions`. */
  addStun(o: StunObservation): boolean {
    const before = this.latency.size;
    this.udp = true;
    setMin(this.latency, o.regionId, o.rttMs);
    const key = formatAddrPort(o.mapped);
    const server = formatAddrPort(o.server);
    if (o.family === 6) {
      setMin(this.v6Latency, o.regionId, o.rttMs);
      this.ipv6 = true;
      this.ipv6CanSend = true;
      this.globalV6 ??= o.mapped;
      this.v6Counters.set(key, (this.v6Counters.get(key) ?? 0) + 1);
    } else {
      setMin(this.v4Latency, o.regionId, o.rttMs);
      this.ipv4 = true;
      this.ipv4CanSend = true;
      this.v4Counters.set(key, (this.v4Counters.get(key) ?? 0) + 1);
      if (this.globalV4 === undefined) {
        this.globalV4 = o.mapped;
        this.globalV4Server = server;
      } else if (server !== this.globalV4Server) {
        if (formatAddrPort(this.globalV4) !== key) this.mappingVaries = true;
        else this.mappingVaries ??= false;
      }
    }
    return before < this.enoughRegions && this.latency.size >= this.enoughRegions;
  }

  /** Records an HTTP(S) latency (used only when UDP is blocked); `family` is the address the check connected to. */
  addHttpLatency(regionId: number, ms: number, family: IpFamily | undefined): void {
    setMin(this.latency, regionId, ms);
    this.httpRegions.add(regionId);
    if (family === 4) this.ipv4 = true;
    if (family === 6) this.ipv6 = true;
  }

  /** The per-region latency so far (for the home selector). */
  regionLatency(): ReadonlyMap<number, number> {
    return this.latency;
  }

  /** The finished report. */
  finish(time: Date, durationMs: number, preferredDerp: number, reason: HomeDecisionReason): NetcheckReport {
    return {
      time,
      durationMs,
      full: this.full,
      udp: this.udp,
      ipv4: this.ipv4,
      ipv6: this.ipv6,
      ipv4CanSend: this.ipv4CanSend,
      ipv6CanSend: this.ipv6CanSend,
      osHasIPv6: this.osHasIPv6,
      icmpv4: undefined,
      mappingVariesByDestIP: this.mappingVaries,
      upnp: undefined,
      pmp: undefined,
      pcp: undefined,
      portMapping: { checked: false, reason: PORTMAP_NOT_CHECKED },
      captivePortal: undefined,
      preferredDerp,
      preferredDerpReason: reason,
      regionLatency: new Map(this.latency),
      regionV4Latency: new Map(this.v4Latency),
      regionV6Latency: new Map(this.v6Latency),
      httpLatencyRegions: new Set(this.httpRegions),
      globalV4: this.globalV4,
      globalV6: this.globalV6,
      globalV4Counters: new Map(this.v4Counters),
      globalV6Counters: new Map(this.v6Counters),
    };
  }
}

/**
 * Endpoints worth advertising from a report (Tailscale's `Report.GetGlobalAddrs`): the first mapping per family
 * plus any other mapping seen more than once (works around NATs that alternate between two public IPs).
 */
export function reportGlobalAddrs(r: NetcheckReport): { v4: AddrPort[]; v6: AddrPort[] } {
  const pick = (first: AddrPort | undefined, counters: ReadonlyMap<string, number>): AddrPort[] => {
    const out: AddrPort[] = [];
    if (first) out.push(first);
    const firstKey = first ? formatAddrPort(first) : undefined;
    for (const [k, n] of counters) {
      if (k === firstKey || n < 2) continue;
      out.push(parseAddrPort(k));
    }
    return out;
  };
  return { v4: pick(r.globalV4, r.globalV4Counters), v6: pick(r.globalV6, r.globalV6Counters) };
}

/** Milliseconds to microsecond precision, so JSON shows 0.123 rather than 0.12300000000000822. */
const us = (ms: number): number => Math.round(ms * 1000) / 1000;

const mapToObject = (m: ReadonlyMap<number | string, number>, round = true): Record<string, number> =>
  Object.fromEntries([...m].map(([k, v]) => [String(k), round ? us(v) : v]));

/**
 * A JSON-safe object of the report (maps become objects keyed by region ID or "ip:port", addresses become
 * "ip:port" strings, latencies stay in milliseconds, rounded to the microsecond). Undefined fields are kept as null
 * so "not checked" shows.
 */
export function reportToJSON(r: NetcheckReport): Record<string, unknown> {
  return {
    time: r.time.toISOString(),
    durationMs: us(r.durationMs),
    full: r.full,
    udp: r.udp,
    ipv4: r.ipv4,
    ipv6: r.ipv6,
    ipv4CanSend: r.ipv4CanSend,
    ipv6CanSend: r.ipv6CanSend,
    osHasIPv6: r.osHasIPv6,
    icmpv4: null,
    mappingVariesByDestIP: r.mappingVariesByDestIP ?? null,
    upnp: null,
    pmp: null,
    pcp: null,
    portMapping: r.portMapping,
    captivePortal: null,
    preferredDerp: r.preferredDerp,
    preferredDerpReason: r.preferredDerpReason,
    regionLatency: mapToObject(r.regionLatency),
    regionV4Latency: mapToObject(r.regionV4Latency),
    regionV6Latency: mapToObject(r.regionV6Latency),
    httpLatencyRegions: [...r.httpLatencyRegions],
    globalV4: r.globalV4 ? formatAddrPort(r.globalV4) : null,
    globalV6: r.globalV6 ? formatAddrPort(r.globalV6) : null,
    globalV4Counters: mapToObject(r.globalV4Counters, false),
    globalV6Counters: mapToObject(r.globalV6Counters, false),
  };
}
