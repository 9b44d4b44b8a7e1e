/**
 * Injected time. Cores take `now` (milliseconds on a monotonic clock) as an argument; drivers read it from a
 * `Clock` and own exactly one `DriverTimer`. Tests pass a fake clock and drive time by hand, so nothing sleeps.
 */
import { randomBytes } from 'node:crypto';

export interface Clock {
  /** Monotonic milliseconds (fractional allowed). */
  now(): number;
  /** Schedules `fn` after `ms`; returns a cancel function. Drivers use it through DriverTimer. */
  setTimer(fn: () => void, ms: number): () => void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimer(fn, ms) {
    const t = setTimeout(fn, Math.max(0, ms));
    t.unref?.();
    return () => clearTimeout(t);
  },
};

/** Random bytes source; injected so tests can be deterministic. */
export type RandomSource = (n: number) => Uint8Array;

export const systemRandom: RandomSource = (n) => {
  const b = randomBytes(n);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
};

/** A uniform float in [0, 1) from a RandomSource. */
export function randomFloat(rng: RandomSource): number {
  const b = rng(4);
  return (((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!) / 2 ** 32;
}

/**
 * The one timer a driver owns: `armAt(deadline)` replaces any earlier arming, so the driver can simply re-arm at
 * its core's `pollTimeout()` after every input.
 */
export class DriverTimer {
  private cancel: (() => void) | undefined;
  private deadline = Infinity;

  constructor(
    private readonly clock: Clock,
    private readonly fire: () => void,
  ) {}

  armAt(deadline: number | undefined): void {
    if (deadline === undefined || !Number.isFinite(deadline)) {
      this.stop();
      return;
    }
    if (this.cancel && deadline === this.deadline) return;
    this.stop();
    this.deadline = deadline;
    this.cancel = this.clock.setTimer(
      () => {
        this.cancel = undefined;
        this.deadline = Infinity;
        this.fire();
      },
      Math.max(0, deadline - this.clock.now()),
    );
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
    this.deadline = Infinity;
  }
}

/**
 * A manual clock for tests and simulations: `advance(ms)` runs due timers in deadline order.
 * Exported from `meshsock/testing`, never used by the library itself.
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start = 1_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return () => this.timers.delete(id);
  }

  /** Moves time forward, firing each due timer at its own deadline. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) if (e[1].at <= end && (!next || e[1].at < next[1].at)) next = e;
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = end;
  }

  get pendingTimers(): number {
    return this.timers.size;
  }
}
