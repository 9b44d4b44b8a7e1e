import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MAGICSOCK } from '../../src/magicsock/constants.js';
import { CrossPathDedup, datagramHash } from '../../src/magicsock/dedup.js';

const W = MAGICSOCK.DEDUP_WINDOW_MS;
const bytes = (s: string) => new TextEncoder().encode(s);

/** Independent re-implementation with BigInt: FNV-1a 32 (offset basis 0x811c9dc5, prime 0x01000193), basis ^ length. */
function refHash(b: Uint8Array): number {
  let h = (0x811c9dc5n ^ BigInt(b.length)) & 0xffffffffn;
  for (const x of b) h = ((h ^ BigInt(x)) * 0x01000193n) & 0xffffffffn;
  return Number(h);
}

describe('datagramHash', () => {
  it('is FNV-1a 32 mixed with the length (empty input: the FNV-1a offset basis 0x811c9dc5, from the FNV spec)', () => {
    expect(datagramHash(new Uint8Array(0))).toBe(0x811c9dc5);
    for (const s of ['a', 'foobar', 'x'.repeat(1280)]) expect(datagramHash(bytes(s))).toBe(refHash(bytes(s)));
  });
  it('matches the reference on arbitrary bytes and is an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const h = datagramHash(b);
        expect(h).toBe(refHash(b));
        expect(Number.isInteger(h) && h >= 0 && h < 2 ** 32).toBe(true);
      }),
    );
  });
  it('zero-filled datagrams of different lengths hash differently', () => {
    const seen = new Set<number>();
    for (let n = 0; n <= 1500; n++) seen.add(datagramHash(new Uint8Array(n)));
    expect(seen.size).toBe(1501);
  });
});

type Arrival = [path: 'u' | 'd', at: number, payload?: string];

/** Feeds arrivals to a fresh dedup and returns the verdicts as a string: D = delivered, x = dropped. */
function run(arrivals: Arrival[]): string {
  const d = new CrossPathDedup();
  return arrivals
    .map(([p, at, payload]) => (d.admit(bytes(payload ?? 'same'), p === 'd', 1000 + at) ? 'D' : 'x'))
    .join('');
}

describe('CrossPathDedup', () => {
  const table: Array<[string, Arrival[], string]> = [
    [
      'a UDP copy then its DERP twin: the twin is dropped',
      [
        ['u', 0],
        ['d', 40],
      ],
      'Dx',
    ],
    [
      'a DERP copy then its UDP twin: the twin is dropped',
      [
        ['d', 0],
        ['u', 40],
      ],
      'Dx',
    ],
    [
      'repeats on one path are all delivered (an application may send the same bytes twice)',
      [
        ['u', 0],
        ['u', 1],
        ['u', 2],
      ],
      'DDD',
    ],
    [
      'the same bytes sent twice over both paths, UDP faster: two delivered',
      [
        ['u', 0],
        ['u', 1],
        ['d', 40],
        ['d', 41],
      ],
      'DDxx',
    ],
    [
      'the same bytes sent twice over both paths, interleaved: two delivered',
      [
        ['u', 0],
        ['d', 1],
        ['u', 2],
        ['d', 3],
      ],
      'DxDx',
    ],
    [
      'a twin that lags more than the window is delivered (a duplicate, as UDP allows)',
      [
        ['u', 0],
        ['d', W + 1],
      ],
      'DD',
    ],
    [
      'different bytes are independent',
      [
        ['u', 0, 'a'],
        ['d', 1, 'b'],
        ['d', 2, 'a'],
        ['u', 3, 'b'],
      ],
      'DDxx',
    ],
  ];
  it.each(table)('%s', (_name, arrivals, verdicts) => expect(run(arrivals)).toBe(verdicts));

  it('distinct datagrams are always delivered, on either path (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.uint8Array({ minLength: 1, maxLength: 64 }), {
          selector: (b) => datagramHash(b),
          maxLength: 200,
        }),
        fc.array(fc.boolean(), { minLength: 200, maxLength: 200 }),
        (datagrams, paths) => {
          const d = new CrossPathDedup();
          datagrams.forEach((b, i) => expect(d.admit(b, paths[i]!, 5000 + i)).toBe(true));
        },
      ),
    );
  });

  it('every datagram sent over both paths is delivered exactly once, in any arrival order within the window (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 2 ** 31 }), (n, seed) => {
        // n distinct datagrams, each arriving once per path, shuffled with a seeded LCG, all within one window.
        const arrivals: Array<[number, boolean]> = [];
        for (let i = 0; i < n; i++) arrivals.push([i, false], [i, true]);
        let x = seed;
        for (let i = arrivals.length - 1; i > 0; i--) {
          x = (Math.imul(x, 1103515245) + 12345) >>> 0;
          const j = x % (i + 1);
          [arrivals[i], arrivals[j]] = [arrivals[j]!, arrivals[i]!];
        }
        const d = new CrossPathDedup();
        const delivered = new Map<number, number>();
        arrivals.forEach(([i, derp], k) => {
          const b = new Uint8Array(8);
          new DataView(b.buffer).setUint32(0, i);
          if (d.admit(b, derp, 1000 + (k * (W - 1)) / arrivals.length)) delivered.set(i, (delivered.get(i) ?? 0) + 1);
        });
        expect(delivered.size).toBe(n);
        for (const c of delivered.values()) expect(c).toBe(1);
      }),
      { numRuns: 100 },
    );
  });

  it('memory is bounded at any rate: 100,000 distinct datagrams inside one window keep at most 8,192 entries', () => {
    const d = new CrossPathDedup();
    const b = new Uint8Array(16);
    const view = new DataView(b.buffer);
    for (let i = 0; i < 100_000; i++) {
      view.setUint32(0, i);
      d.admit(b, false, 1000 + i / 100); // 100k datagrams/s: all inside one 2 s window
    }
    expect(d.size).toBeLessThanOrEqual(8192);
    // The most recent datagrams are still remembered: their DERP twins are dropped.
    view.setUint32(0, 99_999);
    expect(d.admit(b, true, 2000)).toBe(false);
  });

  it('a long run of one payload on UDP swallows at most one window of the same payload later on DERP', () => {
    // A keepalive with fixed bytes every 100 ms over UDP for 10 s, then the direct path fails and it comes over
    // DERP only: those are new datagrams, not twins. At most one window's worth may be taken for twins.
    const d = new CrossPathDedup();
    const ka = bytes('keepalive');
    for (let t = 0; t < 10_000; t += 100) expect(d.admit(ka, false, 1000 + t)).toBe(true);
    let dropped = 0;
    for (let t = 10_000; t < 20_000; t += 100) if (!d.admit(ka, true, 1000 + t)) dropped++;
    expect(dropped).toBeLessThanOrEqual(W / 100);
  });
});
