/**
 * Loss accounting for fault scenarios (nat-lab/loss.ts): send times of lost datagrams are interpolated between the
 * datagrams either side of a gap, each lost datagram lands in the window its send time falls in, and the timeline
 * is sorted and labelled.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { attributeLoss, describeRuns, formatTimeline, lostDatagrams, peerTimeline } from '../../nat-lab/loss.js';

describe('nat-lab loss accounting', () => {
  it('interpolates the send time of each lost datagram between its neighbours', () => {
    // #9 sent at 1000, #13 at 1080: #10–#12 were sent at 1020, 1040, 1060.
    expect(lostDatagrams([{ first: 10, last: 12, count: 3, afterAt: 1000, beforeAt: 1080 }], 20)).toEqual([
      { seq: 10, sentAt: 1020 },
      { seq: 11, sentAt: 1040 },
      { seq: 12, sentAt: 1060 },
    ]);
  });

  it('counts back from the first datagram received when the gap starts at #0', () => {
    expect(lostDatagrams([{ first: 0, last: 1, count: 2, afterAt: null, beforeAt: 500 }], 20)).toEqual([
      { seq: 0, sentAt: 460 },
      { seq: 1, sentAt: 480 },
    ]);
  });

  it('interpolated send times stay strictly between the neighbours, in order (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 100 }),
        (first, n, step) => {
          const afterAt = 10_000;
          const beforeAt = afterAt + (n + 1) * step;
          const lost = lostDatagrams([{ first, last: first + n - 1, count: n, afterAt, beforeAt }], step);
          expect(lost.map((d) => d.seq)).toEqual(Array.from({ length: n }, (_, i) => first + i));
          for (const [i, d] of lost.entries()) {
            expect(d.sentAt).toBeGreaterThan(afterAt);
            expect(d.sentAt).toBeLessThan(beforeAt);
            if (i > 0) expect(d.sentAt).toBeGreaterThanOrEqual(lost[i - 1]!.sentAt);
          }
        },
      ),
    );
  });

  it('sorts losses into windows by send time, the rest outside', () => {
    const lost = [
      { seq: 1, sentAt: 100 },
      { seq: 2, sentAt: 150 },
      { seq: 7, sentAt: 900 },
    ];
    const r = attributeLoss(lost, [
      { name: 'block', from: 90, to: 200 },
      { name: 'lift', from: 500, to: 600 },
    ]);
    expect(r.byWindow.get('block')!.map((d) => d.seq)).toEqual([1, 2]);
    expect(r.byWindow.get('lift')).toEqual([]);
    expect(r.outside).toEqual([{ seq: 7, sentAt: 900 }]);
    expect(describeRuns(lost, 0)).toBe('#1–2 (2, sent +0.10 s–+0.15 s), #7 (1, sent +0.90 s)');
    expect(describeRuns([], 0)).toBe('none');
  });

  it('builds a sorted timeline from the peer lines it knows and skips the rest', () => {
    const a = peerTimeline('a1', [
      { event: 'stats', at: 50 },
      { event: 'path', at: 300, type: 'derp', reason: 'ping-timeout' },
      { event: 'silence', at: 200, gapMs: 6500, via: 'derp', seq: 9 },
    ]);
    const b = peerTimeline('b1', [{ event: 'relay', at: 250, state: 'backoff', lastError: 'ECONNREFUSED' }]);
    expect(formatTimeline([{ at: 82, who: 'a1', what: 'ready' }], 100)).toBe('     -0.018 s  a1    ready');
    expect(formatTimeline([...a, ...b, { at: 100, who: 'test', what: 'BLOCK' }], 100).split('\n')).toEqual([
      '     +0.000 s  test  BLOCK',
      '     +0.100 s  a1    delivery resumed via derp after 6500 ms of silence (#9)',
      '     +0.150 s  b1    DERP backoff (ECONNREFUSED)',
      '     +0.200 s  a1    path → derp (ping-timeout)',
    ]);
  });
});
