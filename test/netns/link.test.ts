/**
 * Link presets, measured: round trip from a host to the STUN server through its site's WAN link. Broad ranges
 * only (the delay line adds a fraction of a millisecond; the VM adds noise), never tight timing.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { leftovers } from '../../nat-lab/cleanup.js';

labSuite('nat-lab link presets', () => {
  let lab: Lab;
  const rtt = async (host: string, count: number, timeoutMs = 1000) => {
    const ev = await lab.probe(host, [
      'rtt',
      '--server',
      '203.0.113.1:3478',
      '--count',
      String(count),
      '--interval-ms',
      '5',
      '--timeout-ms',
      String(timeoutMs),
    ]);
    const r = ev.find((e) => e.event === 'rtt')!;
    return r as { samples: number[]; lost: number; min: number; p50: number; max: number };
  };

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', profile: 'easy', link: 'lan' },
        { name: 'b', profile: 'easy', link: 'wan-20ms' },
        { name: 'c', profile: 'cgnat', link: 'lossy-5' },
        { name: 'd', profile: 'open', link: 'jitter' },
      ],
    });
  });

  afterAll(async () => {
    await lab?.close();
    expect(leftovers(lab.prefix)).toEqual([]);
  });

  it('reports the mechanism it used (netem where the kernel has it, else the delay line)', () => {
    expect(['netem', 'delay-line']).toContain(lab.state.linkMechanism);
    if (lab.state.linkMechanism === 'delay-line') {
      expect(lab.site('b').wire).toBe('b-wire');
      expect(lab.process('delay-line-b')?.running()).toBe(true);
    }
    expect(lab.site('a').wire).toBeUndefined(); // `lan` changes nothing
  });

  it('lan adds nothing', async () => {
    const r = await rtt('a1', 20);
    expect(r.p50).toBeLessThan(5);
  });

  it('wan-20ms: 20 ms target measures 19–30 ms', async () => {
    const r = await rtt('b1', 30);
    expect(r.lost).toBe(0);
    expect(r.p50).toBeGreaterThanOrEqual(19);
    expect(r.p50).toBeLessThanOrEqual(30);
  });

  it('lossy-5 loses round trips (5 % each way) and still delays', async () => {
    const r = await rtt('c1', 200, 150);
    expect(r.lost).toBeGreaterThan(0); // P(no loss in 200 round trips) ≈ 1e-9
    expect(r.lost).toBeLessThan(60);
    expect(r.p50).toBeGreaterThanOrEqual(19);
  });

  it('jitter varies the round trip around 40 ms', async () => {
    const r = await rtt('d1', 40);
    expect(r.p50).toBeGreaterThanOrEqual(25);
    expect(r.p50).toBeLessThanOrEqual(60);
    expect(r.max - r.min).toBeGreaterThan(5);
  });
});
