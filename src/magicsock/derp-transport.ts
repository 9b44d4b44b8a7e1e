/**
 * DERP as the virtual socket's second transport: adapts DerpClient (home region kept forever, other regions on
 * demand, reply routes) to the RelayTransport contract, and runs netcheck on the socket's own UDP sockets to pick
 * the home region and learn the STUN-mapped endpoints (the mapping netcheck sees must be the data flow's mapping).
 */
import { DerpClient } from '../derp/derp-client.js';
import { parseDerpMap, type DerpMap, type DerpMapInput } from '../derp/derp-map.js';
import { resolveHome } from '../derp/home-region.js';
import { networkInterfaces } from 'node:os';
import { normalizeIp, type AddrPort } from '../internal/addr.js';
import type { Clock, RandomSource } from '../internal/clock.js';
import type { PrivateKey, PublicKey } from '../key/keys.js';
import { Netcheck } from '../netcheck/netcheck.js';
import { reportGlobalAddrs, type NetcheckReport } from '../netcheck/report.js';
import type { RelayPacketHandler, RelayTransport } from './relay.js';

/** How long a DERP connection has to answer a ping after a rebind before it is redialled. */
const REBIND_PING_TIMEOUT_MS = 3_000;

export type DerpMapOption = DerpMap | DerpMapInput | string | Record<string, unknown>;

export function toDerpMap(m: DerpMapOption): DerpMap {
  const parsed = typeof m === 'object' && (m as { regions?: unknown }).regions instanceof Map;
  return parsed ? (m as DerpMap) : parseDerpMap(m as DerpMapInput);
}

export class DerpRelay implements RelayTransport {
  readonly client: DerpClient;
  readonly netcheck: Netcheck;
  lastReport: NetcheckReport | undefined;
  private readonly seed: Uint8Array;

  constructor(opts: {
    privateKey: PrivateKey;
    derpMap: DerpMap;
    clock: Clock;
    rng: RandomSource;
    send: (bytes: Uint8Array, to: AddrPort) => void;
    families: { v4: boolean; v6: boolean };
  }) {
    this.client = new DerpClient({
      privateKey: opts.privateKey,
      derpMap: opts.derpMap,
      clock: opts.clock,
      rng: opts.rng,
    });
    this.netcheck = new Netcheck({
      derpMap: opts.derpMap,
      send: opts.send,
      families: opts.families,
      osHasIPv6: opts.families.v6,
      clock: opts.clock,
      lastDerpActivity: (id) => this.client.lastActivity(id),
    });
    this.seed = opts.privateKey.publicKey.bytes;
    // With a single region there is nothing for netcheck to choose: dial it now, so peers are reachable through it
    // without waiting for the first report (which takes its full 3 s STUN timeout where UDP is blocked).
    const homes = [...opts.derpMap.regions.values()].filter((r) => !r.noMeasureNoHome);
    if (homes.length === 1) this.client.setHome(homes[0]!.regionId);
  }

  /** Runs a netcheck report, moves the home region if it says so, and returns our STUN-mapped endpoints. */
  async probe(): Promise<{ mapped: AddrPort[]; mappingVariesByDestIP: boolean | undefined; udp: boolean }> {
    const r = await this.netcheck.getReport();
    this.lastReport = r;
    const home = resolveHome(r.preferredDerp, this.client.home, this.client.derpMap, this.seed);
    if (home !== 0 && home !== this.client.home) this.client.setHome(home);
    const g = reportGlobalAddrs(r);
    return { mapped: [...g.v4, ...g.v6], mappingVariesByDestIP: r.mappingVariesByDestIP, udp: r.udp };
  }

  /**
   * After a rebind (network change): a DERP connection whose local address left the host is half-open and would
   * only notice after its 120 s read timeout, so it is redialled now; the others are pinged (3 s) and redialled if
   * they do not answer (as Tailscale's maybeCloseDERPsOnRebind does).
   */
  onRebind(): void {
    const local = new Set<string>();
    for (const list of Object.values(networkInterfaces()))
      for (const a of list ?? []) local.add(normalizeIp(a.address));
    for (const st of this.client.status()) {
      if (!st.connected) continue;
      const ip = st.localAddress?.ip;
      if (ip === undefined || !local.has(normalizeIp(ip))) {
        this.client.reconnect(st.regionId);
        continue;
      }
      this.client
        .ping(st.regionId, { timeoutMs: REBIND_PING_TIMEOUT_MS })
        .catch(() => this.client.reconnect(st.regionId));
    }
  }

  handleStunPacket(bytes: Uint8Array, from: AddrPort): boolean {
    return this.netcheck.handleStunPacket(bytes, from);
  }

  homeRegion(): number | undefined {
    return this.client.home || undefined;
  }

  canSend(region: number | undefined): boolean {
    const r = region ?? this.client.home;
    return r !== 0 && this.client.canSend(r);
  }

  send(region: number | undefined, dst: PublicKey, packet: Uint8Array): boolean {
    return this.client.send(region ?? this.client.home, dst, packet);
  }

  onPacket(handler: RelayPacketHandler): void {
    this.client.on('packet', handler);
  }

  onChange(handler: () => void): void {
    this.client.on('state', () => handler());
  }

  status(): unknown {
    const r = this.lastReport;
    return {
      home: this.client.home || undefined,
      regions: this.client.status().map((s) => ({
        regionId: s.regionId,
        regionCode: s.regionCode,
        state: s.state,
        preferred: s.preferred,
        latencyMs: r?.regionLatency.get(s.regionId),
        url: s.url,
        lastError: s.lastError,
      })),
      netcheck: r && {
        udp: r.udp,
        globalV4: r.globalV4,
        globalV6: r.globalV6,
        mappingVariesByDestIP: r.mappingVariesByDestIP,
        preferredDerp: r.preferredDerp,
      },
    };
  }

  close(): void {
    this.netcheck.close();
    this.client.close();
  }
}
