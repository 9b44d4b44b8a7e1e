import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../src/derp/token-bucket.js';

describe('TokenBucket', () => {
  it('starts full, refuses past the burst, refills at the rate up to the burst', () => {
    const b = new TokenBucket(1000, 500, 0);
    expect(b.allow(500, 0)).toBe(true);
    expect(b.allow(1, 0)).toBe(false);
    expect(b.allow(100, 100)).toBe(true); // 100 ms → 100 tokens
    expect(b.allow(1, 100)).toBe(false);
    expect(b.balance(10_000)).toBe(500); // capped at the burst
  });

  it('charge() may go negative and waitMs() says how long until zero', () => {
    const b = new TokenBucket(2000, 1000, 0);
    expect(b.charge(3000, 0)).toBe(-2000);
    expect(b.waitMs(0)).toBe(1000);
    expect(b.waitMs(500)).toBe(500);
    expect(b.waitMs(1000)).toBe(0);
  });

  it('ignores time going backwards and rejects nonsense parameters', () => {
    const b = new TokenBucket(1000, 10, 100);
    b.allow(10, 100);
    expect(b.allow(1, 50)).toBe(false);
    expect(() => new TokenBucket(0, 10, 0)).toThrow(RangeError);
    expect(() => new TokenBucket(10, -1, 0)).toThrow(RangeError);
  });
});
