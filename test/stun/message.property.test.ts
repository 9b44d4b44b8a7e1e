import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { type AddrPort, ipFrom16 } from '../../src/internal/addr.js';
import { AttrType, MessageType } from '../../src/stun/constants.js';
import {
  decodeBindingRequest,
  decodeBindingResponse,
  decodeMessage,
  encodeBindingError,
  encodeBindingRequest,
  encodeBindingSuccess,
  encodeMessage,
  isStun,
} from '../../src/stun/message.js';
import { respondToStun } from '../../src/stun/server.js';

const txIdArb = fc.uint8Array({ minLength: 12, maxLength: 12 });
const portArb = fc.integer({ min: 0, max: 65535 });
const v4Arb: fc.Arbitrary<AddrPort> = fc.tuple(fc.ipV4(), portArb).map(([ip, port]) => ({ ip, port }));
/** Any 16 bytes; the expected decoding is the canonical form (IPv4-mapped ones come back as IPv4). */
const v6Arb: fc.Arbitrary<AddrPort> = fc
  .tuple(fc.uint8Array({ minLength: 16, maxLength: 16 }), portArb)
  .map(([b, port]) => ({ ip: ipFrom16(b), port }));

/** Bytes that pass isStun (cookie, top bits clear) with a plausible length, so the decoders get past the header. */
const stunLike = fc
  .tuple(fc.uint8Array({ minLength: 20, maxLength: 120 }), fc.boolean(), fc.integer({ min: 0, max: 0x3fff }))
  .map(([b, fixLen, type]) => {
    const out = b.slice();
    out[0] = type >>> 8;
    out[1] = type & 0xff;
    out.set([0x21, 0x12, 0xa4, 0x42], 4);
    if (fixLen) {
      const n = (out.length - 20) & ~3;
      out[2] = n >>> 8;
      out[3] = n & 0xff;
    }
    return out;
  });

/** A valid message with some bytes overwritten. */
const mutated = fc
  .tuple(
    txIdArb,
    fc.oneof(v4Arb, v6Arb),
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 0, max: 2 }),
  )
  .map(([tx, addr, edits, which]) => {
    const b =
      which === 0
        ? encodeBindingSuccess(tx, addr)
        : which === 1
          ? encodeBindingRequest(tx)
          : encodeBindingError(tx, 420, 'Unknown Attribute', { unknownAttributes: [3] });
    for (const [at, v] of edits) b[at % b.length] = v;
    return b;
  });

function onlyDecodeErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
  }
}

describe('properties', () => {
  it('isStun never throws and matches its definition, on any bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 64 }), stunLike), (b) => {
        const want =
          b.length >= 20 && (b[0]! & 0xc0) === 0 && b[4] === 0x21 && b[5] === 0x12 && b[6] === 0xa4 && b[7] === 0x42;
        expect(isStun(b)).toBe(want);
      }),
      { numRuns: 2000 },
    );
  });

  it('decoders throw only DecodeError, and respondToStun never throws, on any bytes', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 120 }), stunLike, mutated), (b) => {
        onlyDecodeErrors(() => decodeMessage(b));
        onlyDecodeErrors(() => decodeBindingResponse(b));
        onlyDecodeErrors(() => decodeBindingRequest(b));
        const r = respondToStun(b, { ip: '192.0.2.1', port: 1 });
        expect(r === undefined || isStun(r)).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('Binding success round-trips for IPv4 and IPv6 mappings', () => {
    fc.assert(
      fc.property(txIdArb, fc.oneof(v4Arb, v6Arb), (tx, mapped) => {
        const b = encodeBindingSuccess(tx, mapped);
        expect(b.length).toBe(mapped.ip.includes(':') ? 88 : 64);
        expect(decodeBindingResponse(b)).toEqual({
          kind: 'success',
          txId: tx,
          mapped,
          mappedAttr: AttrType.XOR_MAPPED_ADDRESS,
          software: 'meshsock',
          fingerprint: true,
        });
      }),
      { numRuns: 1000 },
    );
  });

  it('MAPPED-ADDRESS alone round-trips too (the RFC 3489 fallback)', () => {
    fc.assert(
      fc.property(txIdArb, fc.oneof(v4Arb, v6Arb), (tx, mapped) => {
        const full = decodeMessage(encodeBindingSuccess(tx, mapped));
        const plain = full.attrs.find((a) => a.type === AttrType.MAPPED_ADDRESS)!;
        const b = encodeMessage(MessageType.BINDING_SUCCESS, tx, [{ type: plain.type, value: plain.value }]);
        expect(decodeBindingResponse(b)).toMatchObject({ mapped, mappedAttr: AttrType.MAPPED_ADDRESS });
      }),
      { numRuns: 300 },
    );
  });

  it('Binding request and error round-trip', () => {
    fc.assert(
      fc.property(
        txIdArb,
        fc.integer({ min: 300, max: 699 }),
        fc.string({ maxLength: 60 }),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 5 }),
        (tx, code, reason, unknown) => {
          expect(decodeBindingRequest(encodeBindingRequest(tx))).toEqual({
            txId: tx,
            software: 'tailnode',
            fingerprint: true,
          });
          const r = decodeBindingResponse(encodeBindingError(tx, code, reason, { unknownAttributes: unknown }));
          expect(r.kind).toBe('error');
          if (r.kind !== 'error') return;
          expect(r.error).toEqual({
            stunCode: code,
            errorClass: Math.floor(code / 100),
            errorNumber: code % 100,
            // Lone surrogates cannot survive UTF-8; compare with what the encoder could carry.
            reason: new TextDecoder().decode(new TextEncoder().encode(reason)),
            unknownAttributes: unknown,
          });
        },
      ),
      { numRuns: 500 },
    );
  });
});
