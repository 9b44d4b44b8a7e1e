/**
 * Our own candidate endpoints — what a CallMeMaybe tells peers (tailscale-protocols.md §3.2): the bound port on
 * each local interface address, STUN-mapped addresses seen from every STUN server, and addresses peers observed in
 * their pongs (a STUN answer for free, useful when no STUN server is configured). Also reports whether the IPv4
 * mapping varies by destination (a "hard" NAT), for status().
 */
import { networkInterfaces } from 'node:os';
import { formatAddrPort, ipClass, normalizeIp, type AddrPort } from '../internal/addr.js';
import type { StunClient } from '../stun/client.js';
import { MAGICSOCK } from './constants.js';
import type { UdpTransport } from './udp-transport.js';

export const EndpointType = {
  PORTMAP: 'portmap',
  LOCAL: 'local',
  STUN: 'stun',
  OBSERVED: 'observed',
} as const;
export type EndpointType = (typeof EndpointType)[keyof typeof EndpointType];

export interface ExtraProbeResult {
  readonly mapped: readonly AddrPort[];
  readonly mappingVariesByDestIP: boolean | undefined;
  readonly udp: boolean;
}

export interface TypedEndpoint {
  readonly addr: AddrPort;
  readonly type: EndpointType;
}

/** At most this many peer-observed addresses are kept (a peer cannot make us advertise a long list). */
const MAX_OBSERVED = 4;
/** Peer-observed addresses are forgotten after this long without being seen again. */
const OBSERVED_TTL_MS = 60_000;
/** STUN query deadline and retransmission start, as netcheck uses (3 s, 100 ms). */
const STUN_TIMEOUT_MS = 3_000;
const STUN_RTO_MS = 100;

export class LocalEndpoints {
  private stun: TypedEndpoint[] = [];
  private portmapped: TypedEndpoint | undefined;
  private readonly observed = new Map<string, { addr: AddrPort; at: number }>();
  /** When the list was last refreshed with STUN (or -Infinity). */
  updatedAt = -Infinity;
  /** true / false once two IPv4 STUN answers were compared; undefined before. */
  mappingVariesByDestIP: boolean | undefined;
  /** Whether the last STUN round got any answer. */
  udpWorks: boolean | undefined;
  private refreshing: Promise<boolean> | undefined;

  constructor(
    private readonly udp: UdpTransport,
    private readonly stunClient: StunClient,
    private readonly stunServers: readonly AddrPort[],
    private readonly bind: { v4: string | false; v6: string | false },
    /** A second source of mapped addresses (netcheck over the DERP map's STUN servers), run beside ours. */
    private readonly extraProbe?: () => Promise<ExtraProbeResult>,
  ) {}

  /** Interface addresses with our bound ports. Wildcard binds enumerate interfaces; specific binds list themselves. */
  localAddrs(): TypedEndpoint[] {
    const out: TypedEndpoint[] = [];
    for (const fam of [4, 6] as const) {
      const port = this.udp.port(fam);
      if (port === undefined) continue;
      const bound = fam === 4 ? this.bind.v4 : this.bind.v6;
      if (bound && bound !== '0.0.0.0' && bound !== '::') {
        out.push({ addr: { ip: normalizeIp(bound), port }, type: EndpointType.LOCAL });
        continue;
      }
      const loopbacks: TypedEndpoint[] = [];
      for (const list of Object.values(networkInterfaces())) {
        for (const a of list ?? []) {
          if ((fam === 4) !== (a.family === 'IPv4')) continue;
          const cls = ipClass(a.address);
          if (cls.v6 && cls.linkLocal) continue;
          const ep = { addr: { ip: normalizeIp(a.address), port }, type: EndpointType.LOCAL };
          (a.internal ? loopbacks : out).push(ep);
        }
      }
      // Loopback only when the host has nothing else (a machine with no network still talks to itself).
      if (!out.some((e) => ipClass(e.addr.ip).v6 === (fam === 6))) out.push(...loopbacks);
    }
    return out;
  }

  /** Sets (or clears) the router's port mapping. Returns true when it changed. */
  setPortmapped(addr: AddrPort | undefined): boolean {
    const before = this.portmapped && formatAddrPort(this.portmapped.addr);
    this.portmapped = addr && { addr: { ip: normalizeIp(addr.ip), port: addr.port }, type: EndpointType.PORTMAP };
    return before !== (addr && formatAddrPort(this.portmapped!.addr));
  }

  /**
   * Every endpoint, deduplicated: the port mapping first (it works even behind a hard NAT), then STUN (most useful
   * to a remote peer), then local, then observed.
   */
  list(now: number): TypedEndpoint[] {
    const seen = new Set<string>();
    const out: TypedEndpoint[] = [];
    const add = (e: TypedEndpoint) => {
      const k = formatAddrPort(e.addr);
      if (seen.has(k)) return;
      seen.add(k);
      out.push(e);
    };
    if (this.portmapped) add(this.portmapped);
    this.stun.forEach(add);
    this.localAddrs().forEach(add);
    for (const [k, o] of this.observed) {
      if (now - o.at > OBSERVED_TTL_MS) this.observed.delete(k);
      else add({ addr: o.addr, type: EndpointType.OBSERVED });
    }
    return out;
  }

  /** A peer's pong told us how it sees us. Returns true when the address is new. */
  noteObserved(addr: AddrPort, now: number): boolean {
    const k = formatAddrPort(addr);
    const had = this.observed.has(k);
    this.observed.delete(k);
    this.observed.set(k, { addr, at: now });
    while (this.observed.size > MAX_OBSERVED) this.observed.delete(this.observed.keys().next().value!);
    return !had;
  }

  stale(now: number): boolean {
    return (
      (this.stunServers.length > 0 || this.extraProbe !== undefined) &&
      now - this.updatedAt > MAGICSOCK.ENDPOINTS_FRESH_MS
    );
  }

  /** Queries every STUN server from our sockets. Resolves true when the STUN endpoint set changed. */
  refresh(now: () => number): Promise<boolean> {
    this.refreshing ??= this.doRefresh(now).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(now: () => number): Promise<boolean> {
    const servers = this.stunServers.filter((s) => this.udp.hasFamily(ipClass(s.ip).v6 ? 6 : 4));
    const [results, extra] = await Promise.all([
      Promise.allSettled(
        servers.map((s) => this.stunClient.query(s, { timeoutMs: STUN_TIMEOUT_MS, rtoMs: STUN_RTO_MS })),
      ),
      this.extraProbe?.().catch(() => undefined),
    ]);
    const mapped: TypedEndpoint[] = [];
    const v4: string[] = [];
    const add = (a: AddrPort) => {
      const m = { ip: normalizeIp(a.ip), port: a.port };
      mapped.push({ addr: m, type: EndpointType.STUN });
      if (!ipClass(m.ip).v6) v4.push(formatAddrPort(m));
    };
    for (const r of results) if (r.status === 'fulfilled') add(r.value.mapped);
    for (const a of extra?.mapped ?? []) add(a);
    this.udpWorks = servers.length || extra ? mapped.length > 0 || extra?.udp === true : undefined;
    if (v4.length >= 2) this.mappingVariesByDestIP = new Set(v4).size > 1;
    if (extra?.mappingVariesByDestIP) this.mappingVariesByDestIP = true;
    const before = this.stun
      .map((e) => formatAddrPort(e.addr))
      .sort()
      .join(',');
    const dedup = new Map(mapped.map((e) => [formatAddrPort(e.addr), e]));
    this.stun = [...dedup.values()];
    this.updatedAt = now();
    return before !== [...dedup.keys()].sort().join(',');
  }
}
