/**
 * A byte token bucket, pure and clock-free: callers pass `now` (ms). Used by the DERP client for the send limit a
 * server advertises in ServerInfo (over the limit → drop), and by the server for its per-client receive limit
 * (charged after a frame is read; a negative balance pauses reading until it refills).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  /**
   * @param bytesPerSec refill rate (> 0)
   * @param burst bucket size in bytes (> 0); the bucket starts full
   * @param now current time in ms
   */
  constructor(
    readonly bytesPerSec: number,
    readonly burst: number,
    now: number,
  ) {
    if (!(bytesPerSec > 0)) throw new RangeError(`"bytesPerSec" expected > 0, got ${bytesPerSec}`);
    if (!(burst > 0)) throw new RangeError(`"burst" expected > 0, got ${burst}`);
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.bytesPerSec) / 1000);
      this.last = now;
    }
  }

  /** Takes `n` tokens if that many are available; otherwise takes none and returns false. */
  allow(n: number, now: number): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Takes `n` tokens unconditionally (the balance may go negative); returns the balance. */
  charge(n: number, now: number): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens;
  }

  /** Milliseconds until the balance is back to zero (0 when it is not negative). */
  waitMs(now: number): number {
    this.refill(now);
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.bytesPerSec;
  }

  /** Current balance (after refilling to `now`). */
  balance(now: number): number {
    this.refill(now);
    return this.tokens;
  }
}
