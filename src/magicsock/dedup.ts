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

export class CrossPathDedup {
  private readonly seen = new Map<number, Seen>();
  private lastSweep = 0;

  /** Returns true when the datagram should be delivered. */
  admit(data: Uint8Array, viaDerp: boolean, now: number): boolean {
    if (now - this.lastSweep > MAGICSOCK.DEDUP_WINDOW_MS || this.seen.size > 4096) this.sweep(now);
    const h = datagramHash(data);
    let s = this.seen.get(h);
    if (!s || now - s.at > MAGICSOCK.DEDUP_WINDOW_MS) {
      s = { udp: 0, derp: 0, at: now };
      this.seen.set(h, s);
    }
    s.at = now;
    if (viaDerp) return ++s.derp > s.udp;
    return ++s.udp > s.derp;
  }

  get size(): number {
    return this.seen.size;
  }

  private sweep(now: number): void {
    this.lastSweep = now;
    for (const [h, s] of this.seen) if (now - s.at > MAGICSOCK.DEDUP_WINDOW_MS) this.seen.delete(h);
  }
}
