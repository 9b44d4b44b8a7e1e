/**
 * What the driver keeps per peer beside the sans-IO endpoint core: keys and precomputed shared keys, the region
 * the peer was heard on, datagrams waiting for a first path, cached path objects, and per-peer counters.
 */
import { ErrorCode, MeshsockError } from '../errors.js';
import { formatAddrPort, type AddrPort } from '../internal/addr.js';
import { bytesEqual } from '../internal/bytes.js';
import type { RandomSource } from '../internal/clock.js';
import { SharedKey } from '../key/box.js';
import { PublicKey, type PrivateKey } from '../key/keys.js';
import { MAGICSOCK } from './constants.js';
import { CrossPathDedup } from './dedup.js';
import { PeerEndpoint } from './endpoint.js';

/** Where a peer's datagrams go (or came from). */
export type PathInfo =
  | { readonly type: 'direct'; readonly addr: string; readonly latencyMs: number | undefined }
  | { readonly type: 'derp'; readonly region: number | undefined }
  | { readonly type: 'none' };

export const NO_PATH: PathInfo = Object.freeze({ type: 'none' });

export interface PeerHints {
  /** The peer's disco key, when a coordination server distributes it (Tailscale-compatible CallMeMaybe). */
  discoKey?: PublicKey | string;
  /** Addresses to try, e.g. from a coordination server or typed by a user ("203.0.113.7:41641"). */
  endpoints?: ReadonlyArray<AddrPort | string>;
  /** The peer's home DERP region. */
  derpRegion?: number;
}

export class PeerState {
  readonly core: PeerEndpoint;
  discoKey: PublicKey | undefined;
  discoShared: SharedKey | undefined;
  /** The disco key came from addPeer hints (a coordination server) rather than from the peer itself. */
  discoFromHints = false;
  /** The peer has proven it knows our current disco key (it sealed a disco message to it). */
  knowsOurDisco = false;
  /** Our last CallMeMaybe found no channel (no relay connection, no signaller): resend when one comes up. */
  callMeMaybeUndelivered = false;
  derpRegion: number | undefined;
  lastHeardRegion: number | undefined;
  path: PathInfo = NO_PATH;
  pending: Array<{ data: Uint8Array; at: number }> = [];
  private held: Array<{ addrKey: string; data: Uint8Array; at: number }> = [];
  readonly dedup = new CrossPathDedup();
  lastDerpRecvAt = -Infinity;
  lastPathChangeAt = -Infinity;
  txPackets = 0;
  rxPackets = 0;
  txBytes = 0;
  rxBytes = 0;
  private nodeSharedKey: SharedKey | undefined;
  private readonly rxPaths = new Map<string, PathInfo>();

  constructor(
    readonly key: PublicKey,
    private readonly self: PrivateKey,
    rng: RandomSource,
  ) {
    this.core = new PeerEndpoint(rng);
    // Computed now so that a key X25519 rejects (a low-order point) fails addPeer with BAD_KEY, instead of
    // throwing later from a timer or a receive callback.
    try {
      this.nodeSharedKey = SharedKey.compute(self, key);
    } catch (cause) {
      throw new MeshsockError(ErrorCode.BAD_KEY, `peer key ${key.toString()} is not usable for X25519`, { cause });
    }
  }

  /** Shared NaCl key between our node key and the peer's (for signal envelopes). */
  get nodeShared(): SharedKey {
    this.nodeSharedKey ??= SharedKey.compute(this.self, this.key);
    return this.nodeSharedKey;
  }

  /**
   * Binds a disco key. Returns true when it is new or changed (the peer restarted); false when unchanged, or when
   * X25519 rejects the key (a low-order point, which only a broken or hostile peer sends): it is not bound.
   */
  bindDisco(bytes: Uint8Array, ourDisco: PrivateKey, fromHints: boolean): boolean {
    if (this.discoKey && bytesEqual(this.discoKey.bytes, bytes)) return false;
    const key = new PublicKey(bytes, 'disco');
    let shared: SharedKey;
    try {
      shared = SharedKey.compute(ourDisco, key);
    } catch {
      return false;
    }
    this.discoKey = key;
    this.discoShared = shared;
    this.discoFromHints = fromHints;
    this.knowsOurDisco = false;
    this.core.hasDiscoKey = true;
    return true;
  }

  /** A cached 'direct' PathInfo for datagrams received from `ip:port` (no allocation per datagram). */
  rxDirectPath(addrKey: string): PathInfo {
    let p = this.rxPaths.get(addrKey);
    if (!p) {
      if (this.rxPaths.size > 16) this.rxPaths.clear();
      p = Object.freeze({ type: 'direct', addr: addrKey, latencyMs: undefined });
      this.rxPaths.set(addrKey, p);
    }
    return p;
  }

  /**
   * Holds a datagram from a candidate address not yet proven by a pong (at most HELD_MAX, each for HELD_MAX_AGE_MS).
   * Returns how many held datagrams (this one included) had to be dropped to make room or because they expired.
   */
  hold(addrKey: string, data: Uint8Array, now: number): number {
    let dropped = this.expireHeld(now);
    this.held.push({ addrKey, data: Uint8Array.from(data), at: now });
    if (this.held.length > MAGICSOCK.HELD_MAX) {
      this.held.shift();
      dropped++;
    }
    return dropped;
  }

  /** Drops held datagrams older than HELD_MAX_AGE_MS; returns how many. */
  expireHeld(now: number): number {
    let n = 0;
    while (this.held.length && now - this.held[0]!.at > MAGICSOCK.HELD_MAX_AGE_MS) {
      this.held.shift();
      n++;
    }
    return n;
  }

  /** When the oldest held datagram expires (Infinity when none is held). */
  heldDeadline(): number {
    return this.held.length ? this.held[0]!.at + MAGICSOCK.HELD_MAX_AGE_MS + 1 : Infinity;
  }

  /** Takes the held datagrams from `addrKey`: [fresh ones in arrival order, expired count]. */
  release(addrKey: string, now: number): [Uint8Array[], number] {
    const fresh: Uint8Array[] = [];
    let expired = 0;
    this.held = this.held.filter((h) => {
      if (h.addrKey !== addrKey) return true;
      if (now - h.at <= MAGICSOCK.HELD_MAX_AGE_MS) fresh.push(h.data);
      else expired++;
      return false;
    });
    return [fresh, expired];
  }

  /** Queues a datagram until a first path exists. Returns false when it had to drop one (queue full). */
  enqueue(data: Uint8Array, now: number): boolean {
    this.pending.push({ data: Uint8Array.from(data), at: now });
    if (this.pending.length > MAGICSOCK.PENDING_QUEUE_MAX) {
      this.pending.shift();
      return false;
    }
    return true;
  }

  /** Takes the queued datagrams that are still fresh; returns [fresh, expiredCount]. */
  takePending(now: number): [Uint8Array[], number] {
    const fresh = this.pending.filter((p) => now - p.at <= MAGICSOCK.PENDING_MAX_AGE_MS).map((p) => p.data);
    const expired = this.pending.length - fresh.length;
    this.pending = [];
    return [fresh, expired];
  }

  /**
   * Whether received datagrams need the cross-path duplicate check right now. Twins need a DERP copy, so a peer with
   * no DERP relation (no region hinted, never heard over DERP: no relay, or a signaller-only deployment) is never
   * checked — the check hashes every byte (~2–6 µs per 1,280-byte datagram, more than the rest of the receive
   * path). Cost of that shortcut: if such a peer's very first DERP packets are twins of UDP copies already
   * delivered, those few are delivered twice (a duplicate, as UDP allows); from then on the peer is checked.
   */
  dedupActive(now: number): boolean {
    if (this.lastDerpRecvAt === -Infinity && this.lastHeardRegion === undefined && this.derpRegion === undefined)
      return false;
    return (
      now - this.lastDerpRecvAt < MAGICSOCK.DEDUP_WINDOW_MS ||
      now - this.lastPathChangeAt < MAGICSOCK.DEDUP_WINDOW_MS ||
      this.core.trustedBest(now) === undefined
    );
  }
}

export function directPath(addr: AddrPort, latencyMs: number): PathInfo {
  return { type: 'direct', addr: formatAddrPort(addr), latencyMs };
}
