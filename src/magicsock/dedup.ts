/**
 * Cross-path duplicate suppression. While a peer's direct path is not yet trusted, its datagrams travel over UDP
 * and DERP at once (tailscale-protocols.md §3.3), so the same datagram can arrive twice. WireGuard drops the copy
 * by its replay counter; a plain application would see it, so the socket drops it here.
 *
 * Per peer, for each datagram hash seen within DEDUP_WINDOW_MS, count arrivals per path. An arrival on path X is
 * new when X has now seen more copies than the other path; otherwise it is the twin of one already delivered from
 * the other path. Repeats on one path are always delivered (an application may send the same bytes twice).
 * Known limit, documented in README: the same bytes sent first over DERP only and then over UDP only within the
 * window look like a twin and are dropped once.
 *
 * A hash's counts live for one window from its first copy (the window does not slide with later copies), so a long
 * run of one payload on one path can take at most one window's worth of that payload on the other path for twins.
 * At most MAX_ENTRIES hashes are remembered, oldest evicted first, so memory and per-datagram work stay bounded at
 * any rate; a twin whose entry was evicted is delivered (a duplicate, which UDP allows), never wrongly dropped.
 */
import { MAGICSOCK } from './constants.js';

interface Seen {
  udp: number;
  derp: number;
  at: number;
}

/** FNV-1a over the bytes, mixed with the length. Not cryptographic; collisions only risk a single false drop. */
export function datagramHash(b: Uint8Array): number {
  let h = 0x811c9dc5 ^ b.length;
  for (let i = 0; i < b.length; i++) {
    h ^= b[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * Hashes remembered at most. At 100k datagrams/s this covers the last ~80 ms: longer than a DERP copy lags its UDP
 * twin on a LAN. Beyond it, the oldest are evicted (amortised O(1)): a quadratic sweep or unbounded map at high
 * rates would cost far more than the rare duplicate.
 */
const MAX_ENTRIES = 8192;
/** Evict down to this many, so eviction runs once per MAX_ENTRIES / 4 new hashes. */
const EVICT_TO = (MAX_ENTRIES * 3) / 4;

export class CrossPathDedup {
  /** In first-seen order (an expired hash is re-inserted at the end), so the oldest are at the front. */
  private readonly seen = new Map<number, Seen>();
  private lastSweep = 0;

  /** Returns true when the datagram should be delivered. */
  admit(data: Uint8Array, viaDerp: boolean, now: number): boolean {
    if (now - this.lastSweep > MAGICSOCK.DEDUP_WINDOW_MS || this.seen.size >= MAX_ENTRIES) this.sweep(now);
    const h = datagramHash(data);
    let s = this.seen.get(h);
    if (!s || now - s.at > MAGICSOCK.DEDUP_WINDOW_MS) {
      if (s) this.seen.delete(h);
      s = { udp: 0, derp: 0, at: now };
      this.seen.set(h, s);
    }
    if (viaDerp) return ++s.derp > s.udp;
    return ++s.udp > s.derp;
  }

  get size(): number {
    return this.seen.size;
  }

  /** Drops expired entries and, above the cap, the oldest ones; stops at the first entry it keeps. */
  private sweep(now: number): void {
    this.lastSweep = now;
    const full = this.seen.size >= MAX_ENTRIES;
    for (const [h, s] of this.seen) {
      if (now - s.at <= MAGICSOCK.DEDUP_WINDOW_MS && !(full && this.seen.size > EVICT_TO)) break;
      this.seen.delete(h);
    }
  }
}
