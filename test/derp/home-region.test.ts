import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDerpMap, type DerpMap } from '../../src/derp/derp-map.js';
import {
  HOME_REGION,
  HomeRegionSelector,
  pickFallbackRegion,
  resolveHome,
  type HomeReportInput,
} from '../../src/derp/home-region.js';
import { FakeClock } from '../../src/internal/clock.js';

function mapOf(ids: number[], extra: Record<string, unknown> = {}, noHome: number[] = []): DerpMap {
  return parseDerpMap({
    Regions: Object.fromEntries(
      ids.map((id) => [
        String(id),
        { RegionCode: `r${id}`, NoMeasureNoHome: noHome.includes(id), Nodes: [{ HostName: `r${id}.example` }] },
      ]),
    ),
    ...extra,
  });
}

const MAP = mapOf([1, 2, 3, 4]);

/** A report whose probes ran in the 100 ms before `now`. */
function report(clock: FakeClock, lat: Record<number, number>, activity?: Record<number, number>): HomeReportInput {
  return {
    regionLatency: new Map(Object.entries(lat).map(([k, v]) => [Number(k), v])),
    reportStart: clock.now() - 100,
    lastDerpActivity: activity ? (id) => activity[id] : undefined,
  };
}

describe('HomeRegionSelector', () => {
  it('picks the lowest latency, ties to the lower region ID', () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector();
    expect(s.addReport(report(c, { 3: 30, 2: 20, 4: 20 }), MAP, c.now())).toEqual({
      regionId: 2,
      reason: 'best',
      previous: 0,
    });
  });

  it('returns 0 ("none") when nothing answered and there is no previous home', () => {
    const c = new FakeClock();
    expect(new HomeRegionSelector().addReport(report(c, {}), MAP, c.now()).regionId).toBe(0);
  });

  it("uses each region's best latency over the 5 min 5 s history, then forgets it", () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector();
    expect(s.addReport(report(c, { 1: 10, 2: 50 }), MAP, c.now()).regionId).toBe(1);
    // 1 gets slower now, but its 10 ms from history still wins (no switch at all).
    c.advance(60_000);
    expect(s.addReport(report(c, { 1: 80, 2: 50 }), MAP, c.now())).toMatchObject({ regionId: 1, reason: 'unchanged' });
    expect(s.bestRecentLatency().get(1)).toBe(10);
    // Just inside the window the old sample is still there...
    c.advance(HOME_REGION.HISTORY_MS - 60_000);
    expect(s.addReport(report(c, { 1: 80, 2: 50 }), MAP, c.now()).regionId).toBe(1);
    // ...1 ms later the first report (10 ms) falls out when the next report is added: region 1's best is now 80,
    // region 2's 50; 80 − 50 ≥ 10 ms and 50 ≤ 2/3 × 80, so the home moves.
    c.advance(1);
    expect(s.addReport(report(c, { 1: 80, 2: 50 }), MAP, c.now())).toMatchObject({
      regionId: 2,
      reason: 'best',
      previous: 1,
    });
    expect(s.historySize).toBe(3);
    expect(s.bestRecentLatency().get(1)).toBe(80);
  });

  it('chooses only among regions that answered in this report', () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector();
    s.addReport(report(c, { 1: 5, 2: 40 }), MAP, c.now());
    c.advance(1000);
    // Region 1 has the best history but did not answer now; region 2 is chosen (1 is unreachable, no frames).
    expect(s.addReport(report(c, { 2: 40 }), MAP, c.now())).toMatchObject({ regionId: 2, reason: 'best' });
  });

  it('multiplies latencies by RegionScore', () => {
    const c = new FakeClock();
    const scored = mapOf([1, 2], { HomeParams: { RegionScore: { '2': 0.5 } } });
    // 2: 30 × 0.5 = 15 beats 1: 20.
    expect(new HomeRegionSelector().addReport(report(c, { 1: 20, 2: 30 }), scored, c.now()).regionId).toBe(2);
    const penal = mapOf([1, 2], { HomeParams: { RegionScore: { '1': 2 } } });
    expect(new HomeRegionSelector().addReport(report(c, { 1: 20, 2: 30 }), penal, c.now()).regionId).toBe(2);
    // A zero score is ignored (treated as 1).
    const zero = mapOf([1, 2], { HomeParams: { RegionScore: { '1': 0 } } });
    expect(new HomeRegionSelector().addReport(report(c, { 1: 20, 2: 30 }), zero, c.now()).regionId).toBe(1);
  });

  it('applies the score to the old home in the hysteresis test too', () => {
    const c = new FakeClock();
    const scored = mapOf([1, 2], { HomeParams: { RegionScore: { '1': 0.5 } } });
    const s = new HomeRegionSelector();
    expect(s.addReport(report(c, { 1: 40, 2: 100 }), scored, c.now()).regionId).toBe(1);
    c.advance(HOME_REGION.HISTORY_MS + 1);
    // Scored: 1 → 50 × 0.5 = 25, 2 → 18. 25 − 18 < 10: keep 1. Unscored it would be 50 vs 18: a switch.
    expect(s.addReport(report(c, { 1: 50, 2: 18 }), scored, c.now())).toMatchObject({
      regionId: 1,
      reason: 'hysteresis-absolute',
    });
  });

  describe('hysteresis', () => {
    function withHome(lat: Record<number, number>): [HomeRegionSelector, FakeClock] {
      const c = new FakeClock();
      const s = new HomeRegionSelector();
      expect(s.addReport(report(c, lat), MAP, c.now()).regionId).toBe(1);
      c.advance(HOME_REGION.HISTORY_MS + 1); // forget the history so only the next report counts
      return [s, c];
    }

    it('keeps the old home when the gain is under 10 ms', () => {
      const [s, c] = withHome({ 1: 20 });
      expect(s.addReport(report(c, { 1: 20.9, 2: 11 }), MAP, c.now())).toMatchObject({
        regionId: 1,
        reason: 'hysteresis-absolute',
      });
    });

    it('switches when the gain is 10 ms or more and more than a third', () => {
      const [s, c] = withHome({ 1: 20 });
      expect(s.addReport(report(c, { 1: 21, 2: 11 }), MAP, c.now())).toMatchObject({ regionId: 2, reason: 'best' });
    });

    it('keeps the old home when best > 2/3 × old', () => {
      const [s, c] = withHome({ 1: 100 });
      expect(s.addReport(report(c, { 1: 100, 2: 67 }), MAP, c.now())).toMatchObject({
        regionId: 1,
        reason: 'hysteresis-relative',
      });
    });

    it('switches when best ≤ 2/3 × old', () => {
      const [s, c] = withHome({ 1: 99 });
      expect(s.addReport(report(c, { 1: 99, 2: 66 }), MAP, c.now())).toMatchObject({ regionId: 2, reason: 'best' });
    });

    it('switches when the old home neither answered nor sent a DERP frame', () => {
      const [s, c] = withHome({ 1: 20 });
      expect(s.addReport(report(c, { 2: 19 }), MAP, c.now())).toMatchObject({ regionId: 2, reason: 'best' });
    });

    it('keeps an old home that sent a DERP frame after the report started (latency counts as 0)', () => {
      const [s, c] = withHome({ 1: 20 });
      const r = report(c, { 2: 5 }, { 1: c.now() - 50 });
      expect(s.addReport(r, MAP, c.now())).toMatchObject({ regionId: 1, reason: 'hysteresis-absolute' });
    });

    it('keeps an old home heard within 8 s before the report, not 8 s + 1 ms', () => {
      const [s, c] = withHome({ 1: 20 });
      const heard = c.now() - HOME_REGION.FRAME_TIME_MS + 1;
      expect(s.addReport(report(c, { 2: 5 }, { 1: heard }), MAP, c.now()).regionId).toBe(1);
      const [s2, c2] = withHome({ 1: 20 });
      const stale = c2.now() - HOME_REGION.FRAME_TIME_MS - 1;
      expect(s2.addReport(report(c2, { 2: 5 }, { 1: stale }), MAP, c2.now()).regionId).toBe(2);
    });
  });

  describe('no region answered', () => {
    function homeThenSilence(heardAgoMs: number): ReturnType<HomeRegionSelector['addReport']> {
      const c = new FakeClock();
      const s = new HomeRegionSelector();
      s.addReport(report(c, { 1: 20 }), MAP, c.now());
      c.advance(200_000);
      return s.addReport(report(c, {}, { 1: c.now() - heardAgoMs }), MAP, c.now());
    }

    it('keeps the old home heard within 120 s', () => {
      expect(homeThenSilence(HOME_REGION.KEEPALIVE_TIMEOUT_MS - 1)).toMatchObject({ regionId: 1, reason: 'keepalive' });
    });

    it('keeps it too when it was heard during the report', () => {
      expect(homeThenSilence(10)).toMatchObject({ regionId: 1, reason: 'recent-frame' });
    });

    it('gives up on it after 120 s', () => {
      expect(homeThenSilence(HOME_REGION.KEEPALIVE_TIMEOUT_MS + 1)).toMatchObject({ regionId: 0, reason: 'none' });
    });

    it('gives up on it with no DERP activity at all', () => {
      const c = new FakeClock();
      const s = new HomeRegionSelector();
      s.addReport(report(c, { 1: 20 }), MAP, c.now());
      expect(s.addReport(report(c, {}), MAP, c.now()).regionId).toBe(0);
      expect(s.previous).toBe(0);
    });
  });

  it('forceRegion wins when reachable and only then', () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector({ forceRegion: 3 });
    expect(s.addReport(report(c, { 1: 5, 3: 90 }), MAP, c.now())).toMatchObject({ regionId: 3, reason: 'forced' });
    c.advance(HOME_REGION.HISTORY_MS + 1);
    expect(s.addReport(report(c, { 1: 5 }), MAP, c.now()).regionId).toBe(1);
    expect(s.addReport(report(c, { 1: 5 }, { 3: c.now() - 10 }), MAP, c.now())).toMatchObject({
      regionId: 3,
      reason: 'forced',
    });
  });

  it('never chooses NoMeasureNoHome or unknown regions, and drops an old home that became NoMeasureNoHome', () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector();
    const map = mapOf([1, 2], {}, [1]);
    expect(s.addReport(report(c, { 1: 1, 2: 50, 9: 0.5 }), map, c.now()).regionId).toBe(2);
    const s2 = new HomeRegionSelector();
    s2.addReport(report(c, { 1: 20 }), MAP, c.now());
    expect(s2.addReport(report(c, { 1: 20, 2: 25 }, { 1: c.now() }), map, c.now()).regionId).toBe(2);
  });

  it('reset() forgets history and the previous home', () => {
    const c = new FakeClock();
    const s = new HomeRegionSelector();
    s.addReport(report(c, { 1: 20 }), MAP, c.now());
    s.reset();
    expect(s.previous).toBe(0);
    expect(s.historySize).toBe(0);
    expect(s.addReport(report(c, { 1: 20, 2: 15 }), MAP, c.now()).regionId).toBe(2);
  });

  it('property: the result is 0, the previous home, the forced region or the best region of this report', () => {
    fc.assert(
      fc.property(
        fc.array(fc.dictionary(fc.constantFrom('1', '2', '3', '4'), fc.integer({ min: 1, max: 500 })), {
          maxLength: 8,
        }),
        (reports) => {
          const c = new FakeClock();
          const s = new HomeRegionSelector();
          for (const lat of reports) {
            c.advance(30_000);
            const prev = s.previous;
            const d = s.addReport(report(c, lat as Record<number, number>), MAP, c.now());
            const answered = Object.keys(lat).map(Number);
            if (answered.length === 0) expect(d.regionId).toBe(0);
            else expect(d.regionId === prev || answered.includes(d.regionId)).toBe(true);
          }
        },
      ),
    );
  });
});

describe('fallback and resolveHome', () => {
  it('pickFallbackRegion is deterministic per seed and spreads over eligible regions', () => {
    const map = mapOf([1, 2, 3, 4], {}, [4]);
    const seen = new Set<number>();
    for (let i = 0; i < 64; i++) {
      const seed = new Uint8Array(32).fill(i);
      const r = pickFallbackRegion(map, seed);
      expect(r).toBe(pickFallbackRegion(map, seed.slice()));
      seen.add(r);
    }
    expect([...seen].sort()).toEqual([1, 2, 3]);
  });

  it('pickFallbackRegion skips STUN-only regions and returns 0 when none is eligible', () => {
    const stunOnly = parseDerpMap({ Regions: { '5': { Nodes: [{ HostName: 's.example', STUNOnly: true }] } } });
    expect(pickFallbackRegion(stunOnly, new Uint8Array(1))).toBe(0);
  });

  it('resolveHome: report region, else current home, else fallback', () => {
    const seed = new Uint8Array([1, 2, 3]);
    expect(resolveHome(2, 3, MAP, seed)).toBe(2);
    expect(resolveHome(0, 3, MAP, seed)).toBe(3);
    expect(resolveHome(0, 0, MAP, seed)).toBe(pickFallbackRegion(MAP, seed));
    expect(resolveHome(0, 99, MAP, seed)).toBe(pickFallbackRegion(MAP, seed));
  });
});
