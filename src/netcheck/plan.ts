/**
 * netcheck probe plans — pure functions from (DERP map, host families, last report) to the STUN probes to send,
 * after Tailscale's `makeProbePlanInitial` / `makeProbePlan` (tailscale-protocols.md §4.2).
 *
 * A plan is a set of probe sets keyed `region-<id>-v4` / `region-<id>-v6`. The sets run concurrently; inside a
 * set, probe n starts at its delay and the set stops at its first reply (or when a probe would add nothing).
 *
 * - Full plan: every region that is not NoMeasureNoHome, each family the host has, 3 tries at 0 / 100 / 200 ms,
 *   rotating over the region's STUN-capable nodes.
 * - Incremental plan: the 3 fastest regions of the last report plus the current home. The two fastest get 2
 *   tries, the home 4, others 1; try n waits n × (last latency × 1.2, or 200 ms) plus n × 50 ms from n = 2. On
 *   dual-stack hosts the 3rd and slower regions alternate between v4 and v6.
 *
 * Nodes whose address is a loopback literal are always probed on their family ("test nodes", as Tailscale does
 * for 127.0.0.1 and STUNTestIP), so loopback tests work on hosts without a global address.
 */
import { ipClass, parseIPv4 } from '../internal/addr.js';
import { nodeLiteralAddress, nodeMightFamily, type DerpMap, type DerpNode, type DerpRegion } from '../derp/derp-map.js';
import { NETCHECK } from './constants.js';

export type IpFamily = 4 | 6;

/** One STUN probe: send one Binding request to `node` over `family` at `delayMs` after the report starts. */
export interface Probe {
  /** Key of the set it belongs to: `region-<id>-v4` or `region-<id>-v6`. */
  readonly set: string;
  readonly regionId: number;
  readonly node: DerpNode;
  readonly family: IpFamily;
  readonly delayMs: number;
  /** Try number inside its set (0-based). */
  readonly attempt: number;
}

/** Probe sets keyed by `region-<id>-v<family>`, in region order. */
export type ProbePlan = ReadonlyMap<string, readonly Probe[]>;

/** Which address families the host (or the injected socket) can use. */
export interface HostFamilies {
  readonly v4: boolean;
  readonly v6: boolean;
}

/** What an incremental plan needs from the previous report. */
export interface LastReportLatency {
  readonly regionLatency: ReadonlyMap<number, number>;
  readonly regionV4Latency: ReadonlyMap<number, number>;
  readonly regionV6Latency: ReadonlyMap<number, number>;
}

/** Key of a probe set. */
export function probeSetKey(regionId: number, family: IpFamily): string {
  return `region-${regionId}-v${family}`;
}

function stunNodes(region: DerpRegion): DerpNode[] {
  return region.nodes.filter((n) => n.stunPort >= 0);
}

/** True when the node's address for the family is a loopback literal: probed whatever the host's interfaces say. */
export function isTestNode(node: DerpNode, family: IpFamily): boolean {
  const lit = nodeLiteralAddress(node, family);
  if (lit === undefined) return false;
  if ((family === 4) !== (parseIPv4(lit) !== undefined)) return false;
  return ipClass(lit).loopback;
}

function wantFamily(node: DerpNode, family: IpFamily, hostHas: boolean): boolean {
  if (!nodeMightFamily(node, family)) return false;
  return hostHas || isTestNode(node, family);
}

function pushProbe(plan: Map<string, Probe[]>, p: Omit<Probe, 'set'>): void {
  const set = probeSetKey(p.regionId, p.family);
  let list = plan.get(set);
  if (!list) plan.set(set, (list = []));
  list.push({ ...p, set });
}

/** The full (initial) plan: every measurable region, 3 tries per family at 0 / 100 / 200 ms. */
export function makeProbePlanInitial(map: DerpMap, host: HostFamilies): ProbePlan {
  const plan = new Map<string, Probe[]>();
  for (const region of map.regions.values()) {
    if (region.noMeasureNoHome) continue;
    const nodes = stunNodes(region);
    if (nodes.length === 0) continue;
    for (const family of [4, 6] as const) {
      for (let attempt = 0; attempt < NETCHECK.INITIAL_TRIES; attempt++) {
        const node = nodes[attempt % nodes.length]!;
        if (!wantFamily(node, family, family === 4 ? host.v4 : host.v6)) continue;
        pushProbe(plan, {
          regionId: region.regionId,
          node,
          family,
          delayMs: attempt * NETCHECK.INITIAL_RETRANSMIT_MS,
          attempt,
        });
      }
    }
  }
  return plan;
}

/**
 * Regions to measure, fastest first by the last report's latency, regions without data last (ties by ID).
 * NoMeasureNoHome regions are left out.
 */
export function sortRegionsByLatency(map: DerpMap, last: ReadonlyMap<number, number>): DerpRegion[] {
  return [...map.regions.values()]
    .filter((r) => !r.noMeasureNoHome)
    .sort((a, b) => {
      const da = last.get(a.regionId);
      const db = last.get(b.regionId);
      if (da !== undefined && db === undefined) return -1;
      if (da === undefined && db !== undefined) return 1;
      if (da !== undefined && db !== undefined && da !== db) return da - db;
      return a.regionId - b.regionId;
    });
}

/**
 * The plan for the next report: the full plan when there is no usable last report, else the incremental plan
 * (3 fastest regions plus the current home).
 *
 * @param home the current home region (0 when none); always included with 4 tries.
 */
export function makeProbePlan(
  map: DerpMap,
  host: HostFamilies,
  last: LastReportLatency | undefined,
  home: number,
): ProbePlan {
  if (last === undefined || last.regionLatency.size === 0) return makeProbePlanInitial(map, host);
  const plan = new Map<string, Probe[]>();
  const had4 = last.regionV4Latency.size > 0;
  const had6 = last.regionV6Latency.size > 0;
  const hadBoth = host.v6 && had4 && had6;
  let planContainsHome = home === 0;
  sortRegionsByLatency(map, last.regionLatency).forEach((region, ri) => {
    const isHome = region.regionId === home;
    if (ri >= NETCHECK.INCREMENTAL_REGIONS && (planContainsHome || !isHome)) return;
    const nodes = stunNodes(region);
    if (nodes.length === 0) return;
    let do4 = host.v4;
    let do6 = host.v6;
    const fastestTwo = ri < 2;
    let tries = 1;
    if (fastestTwo || isHome) tries = NETCHECK.INCREMENTAL_FAST_TRIES;
    else if (hadBoth) {
      do4 = ri % 2 === 0;
      do6 = !do4;
    }
    if (!isHome && !fastestTwo && !had6) do6 = false;
    if (isHome) {
      tries = NETCHECK.INCREMENTAL_HOME_TRIES;
      planContainsHome = true;
    }
    const lastLatency = last.regionLatency.get(region.regionId);
    const step =
      lastLatency !== undefined && lastLatency > 0
        ? lastLatency * NETCHECK.INCREMENTAL_LATENCY_FACTOR
        : NETCHECK.ACTIVE_RETRANSMIT_MS;
    for (let attempt = 0; attempt < tries; attempt++) {
      if (attempt !== 0 && !had6) do6 = false;
      const node = nodes[attempt % nodes.length]!;
      let delayMs = attempt * step;
      if (attempt > 1) delayMs += attempt * NETCHECK.INCREMENTAL_EXTRA_PER_TRY_MS;
      const common = { regionId: region.regionId, node, delayMs, attempt };
      if (nodeMightFamily(node, 4) && (do4 || isTestNode(node, 4))) pushProbe(plan, { ...common, family: 4 });
      if (nodeMightFamily(node, 6) && (do6 || isTestNode(node, 6))) pushProbe(plan, { ...common, family: 6 });
    }
  });
  return plan;
}
