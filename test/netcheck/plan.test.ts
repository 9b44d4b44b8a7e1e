import { describe, expect, it } from 'vitest';
import { parseDerpMap } from '../../src/derp/derp-map.js';
import { makeProbePlan, makeProbePlanInitial, isTestNode, sortRegionsByLatency } from '../../src/netcheck/plan.js';
import type { ProbePlan } from '../../src/netcheck/plan.js';

// Four measurable regions (two nodes each), one NoMeasureNoHome, one with STUN disabled. Documentation hosts only.
const MAP = parseDerpMap({
  Regions: {
    '1': {
      Nodes: [
        { Name: '1a', HostName: 'a1.example' },
        { Name: '1b', HostName: 'b1.example' },
      ],
    },
    '2': {
      Nodes: [
        { Name: '2a', HostName: 'a2.example' },
        { Name: '2b', HostName: 'b2.example' },
      ],
    },
    '3': { Nodes: [{ Name: '3a', HostName: 'a3.example', IPv6: 'none' }] },
    '4': { Nodes: [{ Name: '4a', HostName: 'a4.example' }] },
    '5': { NoMeasureNoHome: true, Nodes: [{ Name: '5a', HostName: 'a5.example' }] },
    '6': { Nodes: [{ Name: '6a', HostName: 'a6.example', STUNPort: -1 }] },
  },
});

/** "node@delay" per set, for compact comparisons. */
function summary(plan: ProbePlan): Record<string, string[]> {
  return Object.fromEntries([...plan].map(([k, ps]) => [k, ps.map((p) => `${p.node.name}@${p.delayMs}`)]));
}

const latency = (o: Record<number, number>) => new Map(Object.entries(o).map(([k, v]) => [Number(k), v]));

describe('makeProbePlanInitial', () => {
  it('probes every measurable region 3 times at 0/100/200 ms, rotating nodes, per family the host has', () => {
    expect(summary(makeProbePlanInitial(MAP, { v4: true, v6: true }))).toEqual({
      'region-1-v4': ['1a@0', '1b@100', '1a@200'],
      'region-1-v6': ['1a@0', '1b@100', '1a@200'],
      'region-2-v4': ['2a@0', '2b@100', '2a@200'],
      'region-2-v6': ['2a@0', '2b@100', '2a@200'],
      'region-3-v4': ['3a@0', '3a@100', '3a@200'],
      'region-4-v4': ['4a@0', '4a@100', '4a@200'],
      'region-4-v6': ['4a@0', '4a@100', '4a@200'],
    });
  });

  it('skips a family the host lacks, except for loopback test nodes', () => {
    const plan = makeProbePlanInitial(MAP, { v4: true, v6: false });
    expect([...plan.keys()].every((k) => k.endsWith('-v4'))).toBe(true);
    const loop = parseDerpMap({
      regions: [{ regionId: 9, nodes: [{ url: 'http://127.0.0.1:1', stunPort: 3478 }, { url: 'http://[::1]:1' }] }],
    });
    expect(summary(makeProbePlanInitial(loop, { v4: false, v6: false }))).toEqual({
      'region-9-v4': ['9a@0', '9a@200'],
      'region-9-v6': ['9b@100'],
    });
    expect(isTestNode(loop.regions.get(9)!.nodes[0]!, 4)).toBe(true);
    expect(isTestNode(MAP.regions.get(1)!.nodes[0]!, 4)).toBe(false);
  });
});

describe('makeProbePlan (incremental)', () => {
  const last = {
    regionLatency: latency({ 1: 50, 2: 10, 3: 30, 4: 40 }),
    regionV4Latency: latency({ 1: 50, 2: 10, 3: 30, 4: 40 }),
    regionV6Latency: new Map<number, number>(),
  };

  it('falls back to the full plan without a usable last report', () => {
    expect(makeProbePlan(MAP, { v4: true, v6: false }, undefined, 0)).toEqual(
      makeProbePlanInitial(MAP, { v4: true, v6: false }),
    );
  });

  it('sorts regions fastest first, unmeasured last', () => {
    expect(sortRegionsByLatency(MAP, latency({ 4: 5, 2: 9 })).map((r) => r.regionId)).toEqual([4, 2, 1, 3, 6]);
  });

  it('probes the 3 fastest: 2 tries for the two fastest, 1 for the third; delays n × 1.2 × latency', () => {
    expect(summary(makeProbePlan(MAP, { v4: true, v6: false }, last, 0))).toEqual({
      'region-2-v4': ['2a@0', '2b@12'],
      'region-3-v4': ['3a@0', '3a@36'],
      'region-4-v4': ['4a@0'],
    });
  });

  it('always includes the home with 4 tries, + n × 50 ms from the third try', () => {
    expect(summary(makeProbePlan(MAP, { v4: true, v6: false }, last, 1))).toEqual({
      'region-2-v4': ['2a@0', '2b@12'],
      'region-3-v4': ['3a@0', '3a@36'],
      'region-4-v4': ['4a@0'],
      // 60 ms step (50 × 1.2); try 2: 120 + 100, try 3: 180 + 150.
      'region-1-v4': ['1a@0', '1b@60', '1a@220', '1b@330'],
    });
  });

  it('uses 200 ms steps for a region without a last latency', () => {
    const l = { ...last, regionLatency: latency({ 2: 10 }) };
    const plan = summary(makeProbePlan(MAP, { v4: true, v6: false }, l, 0));
    expect(plan['region-1-v4']).toEqual(['1a@0', '1b@200']);
  });

  it('on dual-stack hosts alternates v4/v6 from the 3rd region and keeps v6 to the first try', () => {
    const dual = { ...last, regionV6Latency: latency({ 2: 11 }) };
    expect(summary(makeProbePlan(MAP, { v4: true, v6: true }, dual, 0))).toEqual({
      'region-2-v4': ['2a@0', '2b@12'],
      'region-2-v6': ['2a@0', '2b@12'],
      'region-3-v4': ['3a@0', '3a@36'],
      // third region (index 2) is even: v4 only.
      'region-4-v4': ['4a@0'],
    });
    // Without v6 results last time, v6 is tried once and only for the fastest regions.
    expect(summary(makeProbePlan(MAP, { v4: true, v6: true }, last, 0))['region-2-v6']).toEqual(['2a@0']);
  });
});
