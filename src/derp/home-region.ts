/**
 * Home ("preferred") DERP region selection — a pure core, after Tailscale's
 * `netcheck.addReportHistoryAndSetPreferredDERP` and `magicsock.maybeSetNearestDERP` (tailscale-protocols.md §2.7).
 *
 * Rules, in the order they apply to each new report:
 *
 * 1. The report is added to a history kept for 5 min 5 s (full-report interval + report timeout); each region's
 *    best (lowest) latency over the retained reports is used.
 * 2. Latencies are multiplied by the map's `HomeParams.RegionScore` (scores ≤ 0 are ignored).
 * 3. The candidate is the region with the lowest scored best-recent latency among those that answered in *this*
 *    report. Ties go to the lower region ID (Go's map order is random; ours is deterministic).
 * 4. Hysteresis: when the candidate differs from the previous report's region, the previous one is kept if it is
 *    still reachable — it has a latency in this report, or a DERP frame arrived from it after the report started
 *    or within 8 s — and either (its current scored latency − best) < 10 ms, or best > 2/3 × its current latency.
 *    (A previous region heard only through DERP has current latency 0, so the 10 ms rule keeps it.)
 * 5. A forced region (`forceRegion`) wins if it answered in this report or was heard within that window.
 * 6. If no region answered but the previous region's DERP connection was heard within 120 s (2 × keepalive),
 *    the previous region is kept.
 *
 * The result can still be 0 ("unknown"); `resolveHome` then keeps the current home or, with no home at all, picks
 * a deterministic region from a seed (`pickFallbackRegion`, after magicsock's `pickDERPFallback`).
 *
 * Time is the caller's monotonic milliseconds; nothing here reads a clock.
 */
import type { DerpMap } from './derp-map.js';

/** Timing and threshold constants of home selection, each with its reason (tailscale-protocols.md §2.7). */
export const HOME_REGION = {
  /** Report history window: fullReportInterval (5 min) + ReportTimeout (5 s), so one full report is always kept. */
  HISTORY_MS: 5 * 60_000 + 5_000,
  /** preferredDERPAbsoluteDiff: below this absolute gain a switch is not worth a flap. */
  ABSOLUTE_DIFF_MS: 10,
  /** Switch only when the best is at most 2/3 of the old home's latency (a relative gain of a third). */
  RELATIVE_KEEP: 2 / 3,
  /** PreferredDERPFrameTime: a DERP frame this recent counts as "the old home is reachable". */
  FRAME_TIME_MS: 8_000,
  /** PreferredDERPKeepAliveTimeout = 2 × DERP keepalive (60 s): with no latency data, keep a home heard this recently. */
  KEEPALIVE_TIMEOUT_MS: 120_000,
} as const;

/** What one finished report tells the selector. */
export interface HomeReportInput {
  /** Best latency (ms) per region in this report. Regions that did not answer are absent. */
  readonly regionLatency: ReadonlyMap<number, number>;
  /** When the report started (monotonic ms); DERP frames after this count as reachability. */
  readonly reportStart: number;
  /** Monotonic ms of the last DERP frame received from a region, or undefined if none / not connected. */
  readonly lastDerpActivity?: ((regionId: number) => number | undefined) | undefined;
}

/** Why the selector returned what it did — for status output and tests. */
export type HomeDecisionReason =
  | 'best' // lowest scored latency, no previous home or previous not reachable/clearly worse
  | 'unchanged' // the best is the previous home
  | 'hysteresis-absolute' // kept previous: gain below 10 ms
  | 'hysteresis-relative' // kept previous: best > 2/3 of previous
  | 'recent-frame' // no region answered; previous sent a DERP frame during the report or within 8 s
  | 'forced' // forceRegion
  | 'keepalive' // no region answered; previous heard within 120 s
  | 'none'; // nothing answered, nothing to keep

export interface HomeDecision {
  /** Preferred region, 0 when unknown. */
  readonly regionId: number;
  readonly reason: HomeDecisionReason;
  /** The previous report's preferred region (0 if none). */
  readonly previous: number;
}

export interface HomeRegionSelectorOptions {
  /** Region to prefer whenever it is reachable (Tailscale's ForcePreferredDERP). */
  forceRegion?: number;
  /** History window, default HOME_REGION.HISTORY_MS. */
  historyMs?: number;
}

interface HistoryEntry {
  readonly at: number;
  readonly latency: ReadonlyMap<number, number>;
}

/**
 * Keeps the report history and picks the preferred region for each new report. One instance per netcheck client;
 * `addReport` is the only mutator.
 */
export class HomeRegionSelector {
  private history: HistoryEntry[] = [];
  private last = 0;
  private readonly historyMs: number;
  /** Region to prefer whenever reachable; 0 for none. */
  forceRegion: number;

  constructor(opts: HomeRegionSelectorOptions = {}) {
    this.historyMs = opts.historyMs ?? HOME_REGION.HISTORY_MS;
    this.forceRegion = opts.forceRegion ?? 0;
  }

  /** The region the previous report chose (0 before the first report or when it chose none). */
  get previous(): number {
    return this.last;
  }

  /** Number of retained reports (after the last prune). */
  get historySize(): number {
    return this.history.length;
  }

  /** Lowest latency per region over the retained history (unscaled ms). */
  bestRecentLatency(): Map<number, number> {
    const best = new Map<number, number>();
    for (const h of this.history)
      for (const [id, d] of h.latency) {
        const b = best.get(id);
        if (b === undefined || d < b) best.set(id, d);
      }
    return best;
  }

  /** Forgets all history (e.g. after a link change), like starting a new netcheck client. */
  reset(): void {
    this.history = [];
    this.last = 0;
  }

  /**
   * Adds a finished report at `now` and returns the preferred region with the reason. Regions missing from the map
   * or marked NoMeasureNoHome are never chosen.
   */
  addReport(input: HomeReportInput, map: DerpMap, now: number): HomeDecision {
    const prev = this.last;
    const eligible = (id: number): boolean => {
      const r = map.regions.get(id);
      return r !== undefined && !r.noMeasureNoHome;
    };
    const current = new Map<number, number>();
    for (const [id, d] of input.regionLatency) if (eligible(id) && Number.isFinite(d) && d >= 0) current.set(id, d);

    this.history.push({ at: now, latency: current });
    this.history = this.history.filter((h) => now - h.at <= this.historyMs);

    const score = (id: number, d: number): number => d * (map.regionScore.get(id) ?? 1);
    const bestRecent = this.bestRecentLatency();

    let preferred = 0;
    let bestAny = 0;
    let oldCur = 0;
    for (const id of [...current.keys()].sort((a, b) => a - b)) {
      if (id === prev) oldCur = score(id, current.get(id)!);
      const best = score(id, bestRecent.get(id)!);
      if (preferred === 0 || best < bestAny) {
        bestAny = best;
        preferred = id;
      }
    }
    let reason: HomeDecisionReason = preferred === 0 ? 'none' : preferred === prev ? 'unchanged' : 'best';

    const heardSince = (id: number, windowMs: number): boolean => {
      const t = input.lastDerpActivity?.(id);
      return t !== undefined && (t > input.reportStart || t > now - windowMs);
    };
    const changing = prev !== 0 && preferred !== prev;
    if (changing) {
      const reachable = oldCur !== 0 || heardSince(prev, HOME_REGION.FRAME_TIME_MS);
      if (reachable && eligible(prev)) {
        if (preferred === 0) reason = 'recent-frame';
        else if (oldCur - bestAny < HOME_REGION.ABSOLUTE_DIFF_MS) reason = 'hysteresis-absolute';
        else if (bestAny > oldCur * HOME_REGION.RELATIVE_KEEP) reason = 'hysteresis-relative';
        if (reason !== 'best') preferred = prev;
      }
    }
    const force = this.forceRegion;
    if (force !== 0 && force !== preferred && eligible(force)) {
      if (current.has(force) || heardSince(force, HOME_REGION.FRAME_TIME_MS)) {
        preferred = force;
        reason = 'forced';
      }
    }
    if (preferred === 0 && prev !== 0 && eligible(prev)) {
      const t = input.lastDerpActivity?.(prev);
      if (t !== undefined && t > now - HOME_REGION.KEEPALIVE_TIMEOUT_MS) {
        preferred = prev;
        reason = 'keepalive';
      }
    }
    this.last = preferred;
    return { regionId: preferred, reason, previous: prev };
  }
}

/** FNV-1a over the seed bytes: a stable, well-spread index for the fallback pick. */
function fnv1a(seed: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const b of seed) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h >>> 0;
}

/**
 * A deterministic region for a client that knows nothing (UDP blocked, no latency at all): the same seed always
 * picks the same region, and different seeds spread over the regions. Only regions that may be home
 * (not NoMeasureNoHome) and have a DERP node are candidates; 0 when there is none.
 *
 * @param seed stable per-client bytes, e.g. the node public key.
 */
export function pickFallbackRegion(map: DerpMap, seed: Uint8Array): number {
  const ids = [...map.regions.values()]
    .filter((r) => !r.noMeasureNoHome && r.nodes.some((n) => !n.stunOnly))
    .map((r) => r.regionId)
    .sort((a, b) => a - b);
  if (ids.length === 0) return 0;
  return ids[fnv1a(seed) % ids.length]!;
}

/**
 * magicsock's final step: the report's region when it has one; otherwise keep the current home; with no home at
 * all, the deterministic fallback.
 */
export function resolveHome(reportPreferred: number, currentHome: number, map: DerpMap, seed: Uint8Array): number {
  if (reportPreferred !== 0) return reportPreferred;
  if (currentHome !== 0 && map.regions.has(currentHome)) return currentHome;
  return pickFallbackRegion(map, seed);
}
