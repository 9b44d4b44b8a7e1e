import { describe, expect, it } from 'vitest';
import { betterAddr } from '../../src/magicsock/path-score.js';

const q = (ip: string, latencyMs: number, port = 1) => ({ addr: { ip, port }, latencyMs });

// Cases from the behaviour described for Tailscale's TestBetterAddr (tailscale-protocols.md §3.4).
describe('betterAddr', () => {
  it('anything beats no path', () => expect(betterAddr(q('1.1.1.1', 100), undefined)).toBe(true));
  it('the same address never replaces itself', () =>
    expect(betterAddr(q('1.1.1.1', 1), q('1.1.1.1', 100))).toBe(false));
  it('1 % faster does not switch (hysteresis)', () =>
    expect(betterAddr(q('1.1.1.1', 100), q('1.1.1.2', 101))).toBe(false));
  it('3 % faster switches', () => expect(betterAddr(q('1.1.1.1', 100), q('1.1.1.2', 103))).toBe(true));
  it('a private address at 100 ms beats a public one at 91 ms', () =>
    expect(betterAddr(q('10.0.0.1', 100), q('1.1.1.2', 91))).toBe(true));
  it('IPv6 at 100 ms beats IPv4 at 91 ms but not at 30 ms', () => {
    expect(betterAddr(q('2001:db8::1', 100), q('1.1.1.2', 91))).toBe(true);
    expect(betterAddr(q('2001:db8::1', 100), q('1.1.1.2', 30))).toBe(false);
  });
  it('loopback beats everything at similar latency', () =>
    expect(betterAddr(q('127.0.0.1', 1), q('10.0.0.1', 0.9))).toBe(true));
  it('a slower public path does not replace a faster one', () =>
    expect(betterAddr(q('1.1.1.1', 50), q('1.1.1.2', 20))).toBe(false));
});
