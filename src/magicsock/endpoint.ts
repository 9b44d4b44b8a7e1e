/**
 * Per-peer path state for the virtual socket — a sans-IO core. It knows the peer's candidate addresses, which
 * pings are in flight, the best direct path and how long it is trusted; it takes `now` and inputs (a send, a pong,
 * a ping, a CallMeMaybe, a timeout) and returns actions for the driver (magic-socket.ts) to carry out. It never
 * touches a socket or a timer.
 *
 * The algorithm follows Tailscale's magicsock endpoint (tailscale-protocols.md §3.3–3.5):
 * - while no direct path is trusted, data goes over DERP (and also to the untrusted best address, if any), and
 *   every candidate is pinged; a CallMeMaybe tells the peer to ping us back at the same time (hole punching);
 * - a pong proves a path; the best one (path-score.ts) is used alone for TRUST_UDP_ADDR_MS after each pong;
 * - while the session is active, the best path is pinged every HEARTBEAT_INTERVAL_MS, and all candidates are
 *   re-probed every UPGRADE_INTERVAL_MS unless the path is already faster than GOOD_ENOUGH_LATENCY_MS;
 * - a ping to the best path that times out after trust has lapsed drops the path: back to DERP only.
 * meshsock additions (constants.ts says why): fast discovery retries, reciprocal pings, CallMeMaybe replies.
 */
import { formatAddrPort, ipClass, type AddrPort } from '../internal/addr.js';
import { toHex } from '../internal/bytes.js';
import type { RandomSource } from '../internal/clock.js';
import { MAGICSOCK } from './constants.js';
import { betterAddr } from './path-score.js';

/** Where a candidate address came from (bit flags; one address can have several). */
export const CandidateSource = {
  /** Given by the application or a coordination server in addPeer hints. */
  HINT: 1,
  /** Listed in the peer's CallMeMaybe. */
  CALL_ME_MAYBE: 2,
  /** The source address of a ping the peer sent us (peer-reflexive). */
  PING_SOURCE: 4,
} as const;

export const PingPurpose = {
  DISCOVERY: 'discovery',
  HEARTBEAT: 'heartbeat',
} as const;
export type PingPurpose = (typeof PingPurpose)[keyof typeof PingPurpose];

/** Why a peer is not on a direct path right now: the "why am I relayed" answer in status(). */
export const NotDirectReason = {
  /** We do not know the peer's disco key yet, so we cannot authenticate pings (no signal received from it). */
  NO_DISCO_KEY: 'no-disco-key',
  /** We know no address to try for the peer (no hints, no CallMeMaybe received yet). */
  NO_CANDIDATES: 'no-candidates',
  /** Pings are out and we are waiting for the first pong. */
  DISCOVERING: 'discovering',
  /** Every candidate was pinged and none answered: a firewall or a hard NAT is in the way. */
  NO_PONG: 'no-pong',
  /** The direct path stopped answering and is being rediscovered. */
  PATH_LOST: 'path-lost',
  /** The session is idle; the direct path is re-established on the next send. */
  IDLE: 'idle',
} as const;
export type NotDirectReason = (typeof NotDirectReason)[keyof typeof NotDirectReason];

export interface Candidate {
  readonly addr: AddrPort;
  readonly key: string;
  sources: number;
  lastSeen: number;
  lastPing: number;
  nextPingAt: number;
  unansweredPings: number;
  lastGotPing: number;
  lastReciprocalPing: number;
  lastPong: number;
  latencyMs: number | undefined;
  readonly recentLatencies: number[];
}

export interface BestAddr {
  readonly addr: AddrPort;
  readonly key: string;
  latencyMs: number;
  since: number;
  trustUntil: number;
  /**
   * Trust was ended early (an unanswered heartbeat, or the peer's data arriving over DERP) and no pong has come
   * since: datagrams go over DERP alone until one does. Sending them over both paths would deliver a twin to a
   * receiver that had no reason to watch for one; the timeout path (trust lapsed) still sends both, as Tailscale.
   */
  suspect?: boolean;
}

interface SentPing {
  readonly to: AddrPort;
  readonly toKey: string;
  readonly at: number;
  readonly purpose: PingPurpose;
  /** For a heartbeat to the best path: when its silence ends trust early (Infinity once acted on). */
  lossAt: number;
}

export type EndpointAction =
  | { kind: 'ping'; to: AddrPort; txId: Uint8Array; purpose: PingPurpose }
  | { kind: 'callMeMaybe' }
  | { kind: 'bestChanged'; best: BestAddr | undefined; reason: string }
  | { kind: 'learnAddr'; addr: AddrPort; key: string }
  | { kind: 'forgetAddr'; key: string }
  | { kind: 'observedAddr'; addr: AddrPort };

export interface Route {
  /** Send a copy over UDP to this address, if set. */
  readonly udp: AddrPort | undefined;
  /** Send a copy over DERP. */
  readonly derp: boolean;
}

const NEVER = -Infinity;

export class PeerEndpoint {
  readonly candidates = new Map<string, Candidate>();
  best: BestAddr | undefined;
  lastSendAt = NEVER;
  lastRecvAt = NEVER;
  private readonly sentPings = new Map<string, SentPing>();
  private nextHeartbeatAt = Infinity;
  private lastFullPingAt = NEVER;
  private lastCallMeMaybeAt = NEVER;
  private discoveryRequestedAt = NEVER;
  private everHadBest = false;
  private lastDerpRecvDistrust = NEVER;
  /** True once the peer's disco key is known (set by the driver). */
  hasDiscoKey = false;

  constructor(private readonly rng: RandomSource) {}

  /** The best path if it is trusted at `now` — the hot-path check. */
  trustedBest(now: number): BestAddr | undefined {
    const b = this.best;
    return b !== undefined && now < b.trustUntil ? b : undefined;
  }

  /** Adds addresses from addPeer hints. */
  addHints(addrs: readonly AddrPort[], now: number): EndpointAction[] {
    const out: EndpointAction[] = [];
    for (const a of addrs) this.addCandidate(a, CandidateSource.HINT, now, out);
    return out;
  }

  /** Asks for discovery now (addPeer, or a disco key just learned). */
  startDiscovery(now: number): EndpointAction[] {
    this.requestDiscovery(now);
    const out: EndpointAction[] = [];
    this.discover(now, true, out);
    return out;
  }

  /** Marks discovery as wanted from `now` without acting: the next `onTimeout` (due at once) does the work. */
  requestDiscovery(now: number): void {
    this.discoveryRequestedAt = now;
    for (const c of this.candidates.values()) if (c.lastPong === NEVER) c.nextPingAt = Math.min(c.nextPingAt, now);
  }

  /**
   * The application sends a datagram and the best path is not trusted (the driver checks `trustedBest` first).
   * Returns where to send it and what else to do.
   */
  onSend(now: number): { route: Route; actions: EndpointAction[] } {
    this.lastSendAt = now;
    const actions: EndpointAction[] = [];
    const trusted = this.trustedBest(now);
    if (trusted) return { route: { udp: trusted.addr, derp: false }, actions };
    this.discover(now, true, actions);
    if (this.best && this.nextHeartbeatAt === Infinity) this.nextHeartbeatAt = now + MAGICSOCK.HEARTBEAT_INTERVAL_MS;
    return { route: { udp: this.best?.suspect ? undefined : this.best?.addr, derp: true }, actions };
  }

  /** Data arrived from the peer. Data over DERP while we trust a direct path hints that the peer lost it. */
  onRecv(now: number, viaDerp: boolean): EndpointAction[] | undefined {
    this.lastRecvAt = now;
    if (!viaDerp) return undefined;
    const b = this.trustedBest(now);
    if (!b || now - this.lastDerpRecvDistrust < MAGICSOCK.DERP_RECV_REVALIDATE_MS) return undefined;
    this.lastDerpRecvDistrust = now;
    b.trustUntil = now;
    b.suspect = true;
    const out: EndpointAction[] = [];
    this.ping(b.addr, b.key, now, PingPurpose.HEARTBEAT, out);
    return out;
  }

  /** A UDP ping from the peer arrived from `src` (its box already opened with the peer's disco key). */
  onPing(src: AddrPort, now: number): EndpointAction[] {
    const out: EndpointAction[] = [];
    const c = this.addCandidate(src, CandidateSource.PING_SOURCE, now, out);
    if (!c) return out;
    c.lastGotPing = now;
    c.lastSeen = now;
    const unanswered = c.lastPong === NEVER || c.lastPong < c.lastPing;
    if (!this.trustedBest(now) && unanswered && now - c.lastReciprocalPing >= MAGICSOCK.RECIPROCAL_PING_MIN_MS) {
      c.lastReciprocalPing = now;
      this.ping(c.addr, c.key, now, PingPurpose.DISCOVERY, out);
    }
    return out;
  }

  /**
   * A pong for `txIdHex` arrived from `src`, saying the peer saw us as `observed`. Returns undefined when the
   * pong matches no ping of ours (unknown, replayed, or from the wrong address) — the driver counts it.
   */
  onPong(txIdHex: string, src: AddrPort, observed: AddrPort, now: number): EndpointAction[] | undefined {
    const sp = this.sentPings.get(txIdHex);
    if (!sp) return undefined;
    if (sp.to.ip !== src.ip || sp.to.port !== src.port) return undefined;
    this.sentPings.delete(txIdHex);
    const out: EndpointAction[] = [{ kind: 'observedAddr', addr: observed }];
    const latencyMs = Math.max(0, now - sp.at);
    const c = this.candidates.get(sp.toKey);
    if (c) {
      c.lastPong = now;
      c.lastSeen = now;
      c.latencyMs = latencyMs;
      c.unansweredPings = 0;
      // Answered: no fast retries. If no path is trusted later (path lost, idle), discovery re-pings it
      // DISCO_PING_INTERVAL_MS after its last ping, as Tailscale does; Infinity here would never ping it again.
      c.nextPingAt = c.lastPing + MAGICSOCK.DISCO_PING_INTERVAL_MS;
      c.recentLatencies.push(latencyMs);
      if (c.recentLatencies.length > MAGICSOCK.PONG_HISTORY) c.recentLatencies.shift();
    }
    const b = this.best;
    if (b && b.key === sp.toKey) {
      b.latencyMs = latencyMs;
      b.trustUntil = now + MAGICSOCK.TRUST_UDP_ADDR_MS;
      b.suspect = false;
    } else if (!b || now >= b.trustUntil || betterAddr({ addr: sp.to, latencyMs }, b)) {
      this.best = { addr: sp.to, key: sp.toKey, latencyMs, since: now, trustUntil: now + MAGICSOCK.TRUST_UDP_ADDR_MS };
      this.everHadBest = true;
      if (this.nextHeartbeatAt === Infinity) this.nextHeartbeatAt = now + MAGICSOCK.HEARTBEAT_INTERVAL_MS;
      out.push({ kind: 'bestChanged', best: this.best, reason: b ? 'better-path' : 'pong' });
    }
    return out;
  }

  /**
   * The peer's CallMeMaybe: its current endpoints. Re-ping everything at once (simultaneous open). When the peer
   * does not know our current disco key (`peerKnowsUs` false: first contact, or we restarted), it also cannot know
   * our endpoints, so our own CallMeMaybe goes back at once; otherwise at most every CALL_ME_MAYBE_REPLY_MIN_MS.
   */
  onCallMeMaybe(endpoints: readonly AddrPort[], now: number, peerKnowsUs = true): EndpointAction[] {
    const out: EndpointAction[] = [];
    const listed = new Set<string>();
    for (const ep of endpoints) {
      const cls = ipClass(ep.ip);
      if (ep.port === 0 || cls.unspecified || (cls.v6 && cls.linkLocal)) continue;
      const c = this.addCandidate(ep, CandidateSource.CALL_ME_MAYBE, now, out);
      if (c) listed.add(c.key);
    }
    for (const c of [...this.candidates.values()]) {
      if (c.sources & CandidateSource.CALL_ME_MAYBE && !listed.has(c.key)) {
        c.sources &= ~CandidateSource.CALL_ME_MAYBE;
        if (c.sources === 0) this.removeCandidate(c, out);
      }
    }
    for (const c of this.candidates.values()) {
      c.lastPing = NEVER;
      c.nextPingAt = now;
      c.unansweredPings = 0;
    }
    this.discoveryRequestedAt = now;
    const replyGap = peerKnowsUs ? MAGICSOCK.CALL_ME_MAYBE_REPLY_MIN_MS : MAGICSOCK.CALL_ME_MAYBE_FIRST_REPLY_MIN_MS;
    if (now - this.lastCallMeMaybeAt >= replyGap) {
      this.lastCallMeMaybeAt = now;
      out.push({ kind: 'callMeMaybe' });
    }
    this.discover(now, false, out);
    return out;
  }

  /** A send to `addr` failed with an unreachable error: forget it as a path. */
  onSendError(addrKey: string, now: number): EndpointAction[] {
    const out: EndpointAction[] = [];
    const c = this.candidates.get(addrKey);
    if (c) {
      c.lastPong = NEVER;
      c.latencyMs = undefined;
      c.recentLatencies.length = 0;
    }
    if (this.best?.key === addrKey) this.clearBest('send-error', out);
    this.discover(now, true, out);
    return out;
  }

  /** Rebind or network change: forget every path and its stats, keep the addresses, rediscover. */
  reset(now: number): EndpointAction[] {
    const out: EndpointAction[] = [];
    this.sentPings.clear();
    for (const c of this.candidates.values()) {
      c.lastPing = NEVER;
      c.nextPingAt = now;
      c.unansweredPings = 0;
      c.lastPong = NEVER;
      c.latencyMs = undefined;
      c.recentLatencies.length = 0;
    }
    if (this.best) this.clearBest('rebind', out);
    this.discoveryRequestedAt = now;
    this.discover(now, true, out);
    return out;
  }

  /** Runs timers: ping timeouts, discovery retries, heartbeats. */
  onTimeout(now: number): EndpointAction[] {
    const out: EndpointAction[] = [];
    for (const [tx, sp] of this.sentPings) {
      const b = this.best;
      if (now >= sp.lossAt) {
        // A heartbeat to the best path went unanswered: stop trusting it now (sends go over DERP as well) and
        // ask again at once; the next pong restores trust.
        sp.lossAt = Infinity;
        if (b && b.key === sp.toKey && now < b.trustUntil) {
          b.trustUntil = now;
          b.suspect = true;
          this.ping(b.addr, b.key, now, PingPurpose.HEARTBEAT, out);
        }
      }
      if (now - sp.at < MAGICSOCK.PING_TIMEOUT_MS) continue;
      this.sentPings.delete(tx);
      if (b && b.key === sp.toKey && now >= b.trustUntil) this.clearBest('ping-timeout', out);
    }
    const active = now - this.lastSendAt < MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS;
    if (this.best && active && now >= this.nextHeartbeatAt) {
      this.nextHeartbeatAt = now + this.heartbeatInterval(now);
      this.ping(this.best.addr, this.best.key, now, PingPurpose.HEARTBEAT, out);
      if (this.wantFullPing(now)) this.discover(now, true, out, true);
    } else if (!active && this.best) {
      this.nextHeartbeatAt = Infinity;
    }
    if (!this.trustedBest(now) && this.discoveryWanted(now)) this.discover(now, true, out);
    if (!active) this.prune(now, out);
    return out;
  }

  /** The earliest time `onTimeout` has work to do, or Infinity. */
  pollTimeout(now: number): number {
    let t = Infinity;
    for (const sp of this.sentPings.values()) t = Math.min(t, sp.at + MAGICSOCK.PING_TIMEOUT_MS, sp.lossAt);
    if (this.best && now - this.lastSendAt < MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS) t = Math.min(t, this.nextHeartbeatAt);
    if (!this.trustedBest(now) && this.discoveryWanted(now)) {
      if (this.hasDiscoKey) for (const c of this.candidates.values()) t = Math.min(t, c.nextPingAt);
      if (!this.hasDiscoKey || this.candidates.size === 0) t = Math.min(t, this.nextCallMeMaybeAt());
    }
    return t;
  }

  /** The path the driver should report, and if not direct, why. */
  notDirectReason(now: number): NotDirectReason | undefined {
    if (this.trustedBest(now)) return undefined;
    if (!this.hasDiscoKey) return NotDirectReason.NO_DISCO_KEY;
    if (this.candidates.size === 0) return NotDirectReason.NO_CANDIDATES;
    if (!this.discoveryWanted(now) && now - this.lastSendAt >= MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS)
      return NotDirectReason.IDLE;
    if (this.best || this.everHadBest) return NotDirectReason.PATH_LOST;
    for (const c of this.candidates.values())
      if (c.unansweredPings < MAGICSOCK.DISCOVERY_RETRY_MS.length + 1) return NotDirectReason.DISCOVERING;
    return NotDirectReason.NO_PONG;
  }

  private discoveryWanted(now: number): boolean {
    return (
      now - this.lastSendAt < MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS ||
      now - this.discoveryRequestedAt < MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS
    );
  }

  /** 1 s while data flows, 3 s otherwise (constants.ts says why). */
  private heartbeatInterval(now: number): number {
    return now - this.lastSendAt < MAGICSOCK.HEARTBEAT_ACTIVE_INTERVAL_MS
      ? MAGICSOCK.HEARTBEAT_ACTIVE_INTERVAL_MS
      : MAGICSOCK.HEARTBEAT_INTERVAL_MS;
  }

  private wantFullPing(now: number): boolean {
    const b = this.best;
    if (!b || now >= b.trustUntil) return true;
    if (b.latencyMs <= MAGICSOCK.GOOD_ENOUGH_LATENCY_MS) return false;
    return now - this.lastFullPingAt >= MAGICSOCK.UPGRADE_INTERVAL_MS;
  }

  /**
   * Pings every candidate that is due; asks for a CallMeMaybe when any ping went out, or when there is nothing to
   * ping yet (no disco key or no candidates) — the CallMeMaybe is what tells the peer our disco key and endpoints.
   */
  private discover(now: number, sendCallMeMaybe: boolean, out: EndpointAction[], full = false): void {
    let sent = false;
    if (this.hasDiscoKey) {
      for (const c of this.candidates.values()) {
        const due = full
          ? now - c.lastPing >= MAGICSOCK.DISCO_PING_INTERVAL_MS || c.nextPingAt <= now
          : c.nextPingAt <= now;
        if (!due) continue;
        if (this.best?.key === c.key && this.trustedBest(now)) continue;
        this.ping(c.addr, c.key, now, PingPurpose.DISCOVERY, out);
        sent = true;
      }
      if (full) this.lastFullPingAt = now;
    }
    const nothingToPing = !this.hasDiscoKey || this.candidates.size === 0;
    if (sendCallMeMaybe && (sent || nothingToPing) && now >= this.nextCallMeMaybeAt()) {
      this.lastCallMeMaybeAt = now;
      out.push({ kind: 'callMeMaybe' });
    }
  }

  /** CallMeMaybe cadence: quick while the peer has never answered, then with the pings. */
  private nextCallMeMaybeAt(): number {
    const gap = this.hasDiscoKey ? MAGICSOCK.DISCO_PING_INTERVAL_MS : MAGICSOCK.CALL_ME_MAYBE_UNANSWERED_MS;
    return this.lastCallMeMaybeAt + gap;
  }

  private ping(to: AddrPort, key: string, now: number, purpose: PingPurpose, out: EndpointAction[]): void {
    const txId = this.rng(12);
    const b = this.best;
    const watch = purpose === PingPurpose.HEARTBEAT && b !== undefined && b.key === key && now < b.trustUntil;
    const lossAt = watch ? now + Math.max(MAGICSOCK.HEARTBEAT_LOSS_MS, 4 * b.latencyMs) : Infinity;
    this.sentPings.set(toHex(txId), { to, toKey: key, at: now, purpose, lossAt });
    const c = this.candidates.get(key);
    if (c) {
      c.lastPing = now;
      if (c.lastPong === NEVER || purpose === PingPurpose.DISCOVERY) {
        const retry = MAGICSOCK.DISCOVERY_RETRY_MS[c.unansweredPings];
        c.nextPingAt = now + (retry ?? MAGICSOCK.DISCO_PING_INTERVAL_MS);
        c.unansweredPings++;
      } else c.nextPingAt = now + MAGICSOCK.DISCO_PING_INTERVAL_MS;
    }
    out.push({ kind: 'ping', to, txId, purpose });
  }

  private addCandidate(addr: AddrPort, source: number, now: number, out: EndpointAction[]): Candidate | undefined {
    const key = formatAddrPort(addr);
    let c = this.candidates.get(key);
    if (c) {
      c.sources |= source;
      c.lastSeen = now; // listed again (CallMeMaybe, hints): heard of, so not pruned as unheard
      return c;
    }
    if (this.candidates.size >= MAGICSOCK.MAX_CANDIDATES) this.prune(now, out, true);
    if (this.candidates.size >= MAGICSOCK.MAX_CANDIDATES) return undefined;
    c = {
      addr,
      key,
      sources: source,
      lastSeen: now,
      lastPing: NEVER,
      nextPingAt: now,
      unansweredPings: 0,
      lastGotPing: NEVER,
      lastReciprocalPing: NEVER,
      lastPong: NEVER,
      latencyMs: undefined,
      recentLatencies: [],
    };
    this.candidates.set(key, c);
    out.push({ kind: 'learnAddr', addr, key });
    return c;
  }

  private removeCandidate(c: Candidate, out: EndpointAction[]): void {
    this.candidates.delete(c.key);
    // A pong still in flight for a forgotten candidate must not resurrect it as the best path.
    for (const [tx, sp] of this.sentPings) if (sp.toKey === c.key) this.sentPings.delete(tx);
    if (this.best?.key === c.key) this.clearBest('candidate-removed', out);
    out.push({ kind: 'forgetAddr', key: c.key });
  }

  /** Drops runtime-learned candidates not heard from recently (all but hints). `force` also drops the oldest. */
  private prune(now: number, out: EndpointAction[], force = false): void {
    for (const c of [...this.candidates.values()]) {
      if (c.sources & CandidateSource.HINT) continue;
      if (this.best?.key === c.key) continue;
      const heard = Math.max(c.lastSeen, c.lastPong, c.lastGotPing);
      if (now - heard >= MAGICSOCK.CANDIDATE_PRUNE_MS) this.removeCandidate(c, out);
    }
    if (force && this.candidates.size >= MAGICSOCK.MAX_CANDIDATES) {
      let oldest: Candidate | undefined;
      for (const c of this.candidates.values()) {
        if (c.sources & CandidateSource.HINT || this.best?.key === c.key) continue;
        if (!oldest || c.lastSeen < oldest.lastSeen) oldest = c;
      }
      if (oldest) this.removeCandidate(oldest, out);
    }
  }

  private clearBest(reason: string, out: EndpointAction[]): void {
    this.best = undefined;
    this.nextHeartbeatAt = Infinity;
    out.push({ kind: 'bestChanged', best: undefined, reason });
  }
}
