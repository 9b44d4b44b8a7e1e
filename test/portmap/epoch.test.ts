import { describe, expect, it } from 'vitest';
import { epochReset } from '../../src/portmap/epoch.js';

describe('epoch validation (gateway reboot)', () => {
  const prev = { epoch: 1000, at: 0 };

  it('NAT-PMP (RFC 6886 §3.6): 7/8 of our elapsed time, 2 s slack', () => {
    expect(epochReset('pmp', prev, 1000 + 100, 100_000)).toBe(false); // on time
    expect(epochReset('pmp', prev, 1000 + 86, 100_000)).toBe(false); // 87.5 - 2 = 85.5 ≤ 86
    expect(epochReset('pmp', prev, 1000 + 85, 100_000)).toBe(true);
    expect(epochReset('pmp', prev, 3, 100_000)).toBe(true); // rebooted
    expect(epochReset('pmp', prev, 999, 0)).toBe(false); // within 2 s
  });

  it('PCP (RFC 6887 §8.5): backwards by more than 1 s, or deltas apart by more than 2 s + 1/16', () => {
    expect(epochReset('pcp', prev, 1000 + 60, 60_000)).toBe(false);
    expect(epochReset('pcp', prev, 998, 0)).toBe(true);
    expect(epochReset('pcp', prev, 1000 + 50, 60_000)).toBe(true); // server 10 s slow over 60 s
    expect(epochReset('pcp', prev, 1000 + 70, 60_000)).toBe(true); // server 10 s fast
    expect(epochReset('pcp', prev, 1000 + 57, 60_000)).toBe(false); // 60 - 60/16 - 2 = 54.25 ≤ 57
  });
});
