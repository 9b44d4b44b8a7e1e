/**
 * One netcheck report as a sans-IO state machine: it schedules the probe plan, stops early when it can, falls back
 * to HTTP(S) latency when UDP is blocked, and hands the builder's report back. `now` in, actions out; the driver
 * (`netcheck.ts`) owns the sockets, DNS and the one timer.
 *
 * Phases and cut-offs (tailscale-protocols.md §4.2):
 *
 *   stun ──(every set finished │ 3 s STUN timeout │ early stop │ 5 s report timeout)──▶ http? ──▶ done
 *
 * - A probe is due at `start + delay`. When due, it is skipped (and its whole set finished) if it would add no
 *   information (`ReportBuilder.probeWouldHelp`).
 * - A set finishes at its first reply (its other in-flight probes are cancelled), when a due probe would not help,
 *   or when every probe of the set has failed (e.g. no address for the family, send errors) — a family the host
 *   cannot reach then does not hold the report for the full 3 s.
 * - Once `enoughRegions` regions answered, the STUN phase ends after the slowest latency seen (doubled on full
 *   reports).
 * - HTTP phase: only when no STUN reply arrived at all; one HTTP(S) latency check per measurable region that has
 *   a DERP node, bounded by what is left of the 5 s report timeout.
 */
import type { AddrPort } from '../internal/addr.js';
import type { DerpMap, DerpRegion } from '../derp/derp-map.js';
import { NETCHECK } from './constants.js';
import type { IpFamily, Probe, ProbePlan } from './plan.js';
import { ReportBuilder } from './report.js';

/** What the driver must do. Probe and HTTP check ids are unique within a run. */
export type NetcheckAction =
  /** Send this STUN probe now; report back with handleStunReply / handleStunFailure. */
  | { readonly kind: 'stun'; readonly id: number; readonly probe: Probe; readonly deadline: number }
  /** These in-flight probes / checks are no longer needed: abort them (no report back required). */
  | { readonly kind: 'cancel'; readonly ids: readonly number[] }
  /** Measure HTTP(S) latency to this region; report back with handleHttpResult. */
  | { readonly kind: 'http'; readonly id: number; readonly region: DerpRegion; readonly deadline: number }
  /** The run is over: abort anything still in flight and call `builder.finish`. */
  | { readonly kind: 'done' };

export interface NetcheckRunOptions {
  /** Monotonic ms when the report started. */
  readonly start: number;
  readonly full: boolean;
  readonly osHasIPv6: boolean;
  /** Stop early once this many regions answered (3, or 100 in verbose mode). */
  readonly enoughRegions?: number;
  /** Measure HTTP(S) latency when UDP is blocked (default true). */
  readonly httpFallback?: boolean;
  readonly stunTimeoutMs?: number;
  readonly reportTimeoutMs?: number;
}

type ProbeState = 'waiting' | 'inflight' | 'skipped' | 'answered' | 'failed' | 'cancelled';

interface ProbeEntry {
  readonly id: number;
  readonly probe: Probe;
  readonly due: number;
  state: ProbeState;
}

/** The state of one report. Drive it with `handleTimeout(now)` at `pollTimeout()` and the handle* inputs. */
export class NetcheckRun {
  readonly builder: ReportBuilder;
  private phaseName: 'stun' | 'http' | 'done' = 'stun';
  private readonly probes: ProbeEntry[] = [];
  private readonly setDone = new Set<string>();
  private readonly sets = new Map<string, ProbeEntry[]>();
  private readonly http = new Map<number, { region: DerpRegion; pending: boolean }>();
  private readonly stunEnd: number;
  private readonly reportEnd: number;
  private earlyStop: number | undefined;
  private nextId = 1;
  private readonly httpFallback: boolean;

  constructor(
    plan: ProbePlan,
    private readonly map: DerpMap,
    opts: NetcheckRunOptions,
  ) {
    this.builder = new ReportBuilder(opts.full, opts.osHasIPv6, opts.enoughRegions ?? NETCHECK.ENOUGH_REGIONS);
    this.reportEnd = opts.start + (opts.reportTimeoutMs ?? NETCHECK.REPORT_TIMEOUT_MS);
    this.stunEnd = Math.min(this.reportEnd, opts.start + (opts.stunTimeoutMs ?? NETCHECK.STUN_PROBE_TIMEOUT_MS));
    this.httpFallback = opts.httpFallback ?? true;
    for (const [set, list] of plan) {
      const entries = list.map((probe) => ({
        id: this.nextId++,
        probe,
        due: opts.start + probe.delayMs,
        state: 'waiting' as ProbeState,
      }));
      this.sets.set(set, entries);
      this.probes.push(...entries);
    }
    this.probes.sort((a, b) => a.due - b.due || a.id - b.id);
  }

  /** 'stun', 'http' or 'done'. */
  get phase(): 'stun' | 'http' | 'done' {
    return this.phaseName;
  }

  /** The next time `handleTimeout` must run, or undefined when finished. */
  pollTimeout(): number | undefined {
    if (this.phaseName === 'done') return undefined;
    if (this.phaseName === 'http') return this.reportEnd;
    let t = Math.min(this.stunEnd, this.earlyStop ?? Infinity);
    for (const p of this.probes) if (p.state === 'waiting' && !this.setDone.has(p.probe.set)) t = Math.min(t, p.due);
    return t;
  }

  /** Sends what is due, ends phases whose time is up. Call at start (with `start`) and at every `pollTimeout()`. */
  handleTimeout(now: number): NetcheckAction[] {
    const out: NetcheckAction[] = [];
    if (this.phaseName === 'stun') {
      if (now >= this.stunEnd || (this.earlyStop !== undefined && now >= this.earlyStop)) {
        this.endStun(now, out);
        return out;
      }
      for (const p of this.probes) {
        if (p.state !== 'waiting' || p.due > now || this.setDone.has(p.probe.set)) continue;
        if (!this.builder.probeWouldHelp(p.probe.regionId, p.probe.family)) {
          p.state = 'skipped';
          this.finishSet(p.probe.set, out);
          continue;
        }
        p.state = 'inflight';
        out.push({ kind: 'stun', id: p.id, probe: p.probe, deadline: this.stunEnd });
      }
      this.maybeAllSetsDone(now, out);
    } else if (this.phaseName === 'http' && now >= this.reportEnd) {
      this.finishAll(out);
    }
    return out;
  }

  /** A STUN probe answered. */
  handleStunReply(id: number, server: AddrPort, mapped: AddrPort, rttMs: number, now: number): NetcheckAction[] {
    const out: NetcheckAction[] = [];
    const p = this.probes.find((e) => e.id === id);
    if (!p || p.state !== 'inflight' || this.phaseName !== 'stun') return out;
    p.state = 'answered';
    const enough = this.builder.addStun({ regionId: p.probe.regionId, server, family: p.probe.family, mapped, rttMs });
    if (enough) this.earlyStop = now + this.builder.stopAfterMs;
    this.finishSet(p.probe.set, out);
    this.maybeAllSetsDone(now, out);
    return out;
  }

  /**
   * A STUN probe failed. `sent` says whether the request left the socket (a timeout means it did; a send error or
   * an unresolvable server means it did not).
   */
  handleStunFailure(id: number, sent: boolean, now: number): NetcheckAction[] {
    const out: NetcheckAction[] = [];
    const p = this.probes.find((e) => e.id === id);
    if (!p || p.state !== 'inflight' || this.phaseName !== 'stun') return out;
    p.state = 'failed';
    this.builder.noteSend(p.probe.family, sent);
    const set = this.sets.get(p.probe.set)!;
    if (set.every((e) => e.state === 'failed')) this.finishSet(p.probe.set, out);
    this.maybeAllSetsDone(now, out);
    return out;
  }

  /** Records that a STUN request left the socket (sets ipv4CanSend / ipv6CanSend). */
  handleStunSent(family: IpFamily): void {
    this.builder.noteSend(family, true);
  }

  /** An HTTP(S) latency check finished; `ms` undefined when it failed. */
  handleHttpResult(id: number, ms: number | undefined, family: IpFamily | undefined, now: number): NetcheckAction[] {
    const out: NetcheckAction[] = [];
    const h = this.http.get(id);
    if (!h || !h.pending || this.phaseName !== 'http') return out;
    h.pending = false;
    if (ms !== undefined) this.builder.addHttpLatency(h.region.regionId, ms, family);
    if ([...this.http.values()].every((x) => !x.pending)) this.finishAll(out);
    else if (now >= this.reportEnd) this.finishAll(out);
    return out;
  }

  private finishSet(set: string, out: NetcheckAction[]): void {
    if (this.setDone.has(set)) return;
    this.setDone.add(set);
    const ids: number[] = [];
    for (const e of this.sets.get(set) ?? []) {
      if (e.state === 'inflight') {
        e.state = 'cancelled';
        ids.push(e.id);
      }
    }
    if (ids.length > 0) out.push({ kind: 'cancel', ids });
  }

  private maybeAllSetsDone(now: number, out: NetcheckAction[]): void {
    if (this.phaseName !== 'stun') return;
    for (const set of this.sets.keys()) if (!this.setDone.has(set)) return;
    this.endStun(now, out);
  }

  private endStun(now: number, out: NetcheckAction[]): void {
    const ids = this.probes.filter((p) => p.state === 'inflight').map((p) => p.id);
    for (const p of this.probes) if (p.state === 'inflight' || p.state === 'waiting') p.state = 'cancelled';
    if (ids.length > 0) out.push({ kind: 'cancel', ids });
    if (this.builder.anyUdp || !this.httpFallback || now >= this.reportEnd) {
      this.phaseName = 'done';
      out.push({ kind: 'done' });
      return;
    }
    const need = [...this.map.regions.values()].filter(
      (r) => !r.noMeasureNoHome && r.nodes.some((n) => !n.stunOnly) && !this.builder.hasRegionLatency(r.regionId),
    );
    if (need.length === 0) {
      this.phaseName = 'done';
      out.push({ kind: 'done' });
      return;
    }
    this.phaseName = 'http';
    for (const region of need) {
      const id = this.nextId++;
      this.http.set(id, { region, pending: true });
      out.push({ kind: 'http', id, region, deadline: this.reportEnd });
    }
  }

  private finishAll(out: NetcheckAction[]): void {
    const ids = [...this.http].filter(([, h]) => h.pending).map(([id]) => id);
    for (const id of ids) this.http.get(id)!.pending = false;
    if (ids.length > 0) out.push({ kind: 'cancel', ids });
    this.phaseName = 'done';
    out.push({ kind: 'done' });
  }
}
