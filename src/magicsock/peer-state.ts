/**
 * What the driver keeps per peer beside the sans-IO endpoint core: keys and precomputed shared keys, the region
 * the peer was heard on, datagrams waiting for a first path, cached path objects, and per-peer counters.
 */
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
  derpRegion: number | undefined;
  lastHeardRegion: number | undefined;
  path: PathInfo = NO_PATH;
  pending: Array<{ data: Uint8Array; at: number }> = [];
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
  }

  /** Shared NaCl key between our node key and the peer's (for signal envelopes). */
  get nodeShared(): SharedKey {
    this.nodeSharedKey ??= SharedKey.compute(this.self, this.key);
    return this.nodeSharedKey;
  }

  /** Binds a disco key. Returns true when it is new or changed (the peer restarted). */
  bindDisco(bytes: Uint8Array, ourDisco: PrivateKey, fromHints: boolean): boolean {
    if (this.discoKey && bytesEqual(this.discoKey.bytes, bytes)) return false;
    this.discoKey = new PublicKey(bytes, 'disco');
    this.discoShared = SharedKey.compute(ourDisco, this.discoKey);
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

  /** Whether received datagrams need the cross-path duplicate check right now. */
  dedupActive(now: number): boolean {
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
