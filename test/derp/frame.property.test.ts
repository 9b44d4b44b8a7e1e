import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DERP, FrameType } from '../../src/derp/constants.js';
import { decodeFrame, encodeFrame, framePayloadLength, FrameReader, type Frame } from '../../src/derp/frame.js';
import { DecodeError } from '../../src/errors.js';
import { ipFrom16 } from '../../src/internal/addr.js';

const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
const bytes = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 0, maxLength: max });
const u8 = fc.integer({ min: 0, max: 255 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const knownTypes = new Set<number>(Object.values(FrameType));

/** Every frame the codec can encode, with fields in their valid ranges (sealed boxes at least nonce + tag long). */
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  key.map((k) => ({ type: 'serverKey' as const, key: k })),
  fc
    .tuple(key, fc.uint8Array({ minLength: 40, maxLength: 200 }))
    .map(([k, s]) => ({ type: 'clientInfo' as const, key: k, sealed: s })),
  fc.uint8Array({ minLength: 40, maxLength: 200 }).map((s) => ({ type: 'serverInfo' as const, sealed: s })),
  fc.tuple(key, bytes(300)).map(([k, p]) => ({ type: 'sendPacket' as const, dst: k, packet: p })),
  fc.tuple(key, bytes(300)).map(([k, p]) => ({ type: 'recvPacket' as const, src: k, packet: p })),
  fc.constant({ type: 'keepAlive' as const }),
  fc.boolean().map((b) => ({ type: 'notePreferred' as const, preferred: b })),
  fc.tuple(key, u8).map(([k, r]) => ({ type: 'peerGone' as const, key: k, reason: r })),
  fc
    .tuple(key, fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 65535 }), u8)
    .map(([k, ip, port, flags]) => ({
      type: 'peerPresent' as const,
      key: k,
      endpoint: { ip: ipFrom16(ip), port },
      flags,
    })),
  fc.tuple(key, key, bytes(300)).map(([s, d, p]) => ({ type: 'forwardPacket' as const, src: s, dst: d, packet: p })),
  fc.constant({ type: 'watchConns' as const }),
  key.map((k) => ({ type: 'closePeer' as const, key: k })),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((d) => ({ type: 'ping' as const, data: d })),
  fc.uint8Array({ minLength: 8, maxLength: 8 }).map((d) => ({ type: 'pong' as const, data: d })),
  fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => ({ type: 'health' as const, problem: s })),
  fc.tuple(u32, u32).map(([a, b]) => ({ type: 'restarting' as const, reconnectInMs: a, tryForMs: b })),
  fc
    .tuple(
      u8.filter((t) => !knownTypes.has(t)),
      bytes(100),
    )
    .map(([t, p]) => ({ type: 'unknown' as const, frameType: t, payload: p })),
);

function copyFrame(f: Frame): Frame {
  // Decoded byte fields are views; copy them so frames can be compared after the reader moves on.
  return JSON.parse(
    JSON.stringify(f, (_k, v: unknown) => (v instanceof Uint8Array ? { u8: [...v] } : v)),
    (_k, v: unknown) => (v && typeof v === 'object' && 'u8' in v ? new Uint8Array((v as { u8: number[] }).u8) : v),
  ) as Frame;
}

function readAll(chunks: Uint8Array[], drainEach: boolean): Frame[] {
  const r = new FrameReader(DERP.MAX_CLIENT_FRAME);
  const out: Frame[] = [];
  for (const c of chunks) {
    r.push(c);
    if (drainEach) for (let f = r.next(); f; f = r.next()) out.push(copyFrame(f));
  }
  for (let f = r.next(); f; f = r.next()) out.push(copyFrame(f));
  expect(r.buffered).toBe(0);
  return out;
}

describe('DERP frame properties', () => {
  it('decode(encode(f)) returns f, and the length prefix is the payload length', () => {
    fc.assert(
      fc.property(frameArb, (f) => {
        const enc = encodeFrame(f);
        expect(enc.length).toBe(DERP.FRAME_HEADER_LEN + framePayloadLength(f));
        const len = ((enc[1]! << 24) >>> 0) + ((enc[2]! << 16) | (enc[3]! << 8) | enc[4]!);
        expect(len).toBe(enc.length - DERP.FRAME_HEADER_LEN);
        expect(copyFrame(decodeFrame(enc[0]!, enc.subarray(DERP.FRAME_HEADER_LEN)))).toEqual(copyFrame(f));
      }),
      { numRuns: 2000 },
    );
  });

  it('decodeFrame throws nothing but DecodeError, whatever the type and bytes', () => {
    fc.assert(
      fc.property(u8, bytes(120), (t, p) => {
        try {
          decodeFrame(t, p);
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('FrameReader throws nothing but DecodeError on any byte stream', () => {
    fc.assert(
      fc.property(fc.array(bytes(64), { maxLength: 8 }), fc.integer({ min: 0, max: 200 }), (chunks, max) => {
        const r = new FrameReader(max);
        try {
          for (const c of chunks) {
            r.push(c);
            while (r.next()) {
              /* drain */
            }
          }
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('FrameReader yields the same frames whatever the chunking, drained or not', () => {
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 0, max: 10_000 }), { maxLength: 20 }),
        fc.boolean(),
        (frames, cuts, drainEach) => {
          const encoded = frames.map(encodeFrame);
          const total = encoded.reduce((n, e) => n + e.length, 0);
          const all = new Uint8Array(total);
          let o = 0;
          for (const e of encoded) {
            all.set(e, o);
            o += e.length;
          }
          const points = [...new Set(cuts.map((c) => c % (total + 1)))].sort((a, b) => a - b);
          const chunks: Uint8Array[] = [];
          let prev = 0;
          for (const p of [...points, total]) {
            chunks.push(all.slice(prev, p));
            prev = p;
          }
          expect(readAll(chunks, drainEach)).toEqual(readAll([all], true));
          expect(readAll([all], true)).toEqual(frames.map(copyFrame));
        },
      ),
      { numRuns: 1000 },
    );
  });
});
