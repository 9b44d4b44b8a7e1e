import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { fromHex, toHex } from '../../src/internal/bytes.js';
import { NatPmpResult } from '../../src/portmap/constants.js';
import {
  decodeNatPmpRequest,
  decodeNatPmpResponse,
  encodeNatPmpMapRequest,
  encodeNatPmpPublicAddressRequest,
  encodeNatPmpResponse,
  isNatPmpResponse,
  natPmpResultName,
  type NatPmpResponse,
} from '../../src/portmap/nat-pmp.js';

// Golden vectors written from the byte layouts of RFC 6886 §3.2 (public address) and §3.3 (map), one field per
// hex group.
describe('NAT-PMP golden vectors (RFC 6886)', () => {
  it('public address request: version 0, opcode 0', () => {
    expect(toHex(encodeNatPmpPublicAddressRequest())).toBe('0000');
  });

  it('UDP map request: 0 | 1 | reserved | internal 41641 | suggested 41641 | lifetime 7200', () => {
    const b = encodeNatPmpMapRequest({
      protocol: 'udp',
      internalPort: 41641,
      suggestedExternalPort: 41641,
      lifetime: 7200,
    });
    expect(toHex(b)).toBe(['00', '01', '0000', 'a2a9', 'a2a9', '00001c20'].join(''));
    expect(decodeNatPmpRequest(b)).toEqual({
      op: 'map',
      protocol: 'udp',
      internalPort: 41641,
      suggestedExternalPort: 41641,
      lifetime: 7200,
    });
  });

  it('deletion (§3.4): lifetime 0 and suggested port 0', () => {
    const b = encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 40000, suggestedExternalPort: 0, lifetime: 0 });
    expect(toHex(b)).toBe('000100009c400000' + '00000000');
  });

  it('public address response: 0 | 128 | success | epoch 3600 | 198.51.100.7', () => {
    const b = fromHex('00 80 0000 00000e10 c6336407');
    expect(isNatPmpResponse(b)).toBe(true);
    expect(decodeNatPmpResponse(b)).toEqual({
      op: 'public-address',
      resultCode: 0,
      epoch: 3600,
      publicIp: '198.51.100.7',
    });
  });

  it('UDP map response: 0 | 129 | success | epoch 16 | internal 40000 | external 40960 | lifetime 7200', () => {
    const b = fromHex('00 81 0000 00000010 9c40 a000 00001c20');
    expect(decodeNatPmpResponse(b)).toEqual({
      op: 'map',
      protocol: 'udp',
      resultCode: 0,
      epoch: 16,
      internalPort: 40000,
      externalPort: 40960,
      lifetime: 7200,
    });
  });

  it('error in the short form (§3.5): NOT_AUTHORIZED, 8 bytes, fields undefined', () => {
    const b = fromHex('00 81 0002 00000010');
    expect(isNatPmpResponse(b)).toBe(true);
    const r = decodeNatPmpResponse(b);
    expect(r).toMatchObject({ op: 'map', resultCode: NatPmpResult.NOT_AUTHORIZED, epoch: 16, externalPort: undefined });
    expect(natPmpResultName(r.resultCode)).toBe('NOT_AUTHORIZED');
    expect(natPmpResultName(77)).toBe('RESULT_77');
    expect(toHex(encodeNatPmpResponse(r))).toBe('008100020000' + '0010');
  });

  it('a NAT-PMP gateway answering a PCP (version 2) ANNOUNCE: opcode 128, UNSUPPORTED_VERSION', () => {
    const r = decodeNatPmpResponse(fromHex('00 80 0001 00000010'));
    expect(r).toEqual({ op: 'public-address', resultCode: 1, epoch: 16, publicIp: undefined });
  });

  it('TCP map response keeps the protocol; trailing bytes are ignored', () => {
    const r = decodeNatPmpResponse(fromHex('00 82 0000 00000001 0050 0050 0000003c ffff'));
    expect(r).toMatchObject({ op: 'map', protocol: 'tcp', externalPort: 80, lifetime: 60 });
  });

  it('rejects requests, other versions, unknown opcodes, short success answers', () => {
    for (const hex of [
      '0000',
      '00010000',
      '02810000 00000000',
      '00 85 0000 00000000',
      '00 81 0000 00000010 9c40',
      '00 80 0000 00000001 c633',
    ])
      expect(() => decodeNatPmpResponse(fromHex(hex)), hex).toThrow(DecodeError);
    expect(isNatPmpResponse(fromHex('00 81 0000 00000010 9c40'))).toBe(false);
    expect(() => decodeNatPmpRequest(fromHex('00 03'))).toThrow(DecodeError);
    expect(() => decodeNatPmpRequest(fromHex('01 00'))).toThrow(DecodeError);
  });

  it('rejects out-of-range arguments with RangeError/TypeError', () => {
    expect(() =>
      encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 65536, suggestedExternalPort: 0, lifetime: 1 }),
    ).toThrow(RangeError);
    expect(() =>
      encodeNatPmpMapRequest({ protocol: 'udp', internalPort: 1, suggestedExternalPort: 0, lifetime: -1 }),
    ).toThrow(RangeError);
    expect(() =>
      encodeNatPmpMapRequest({ protocol: 'sctp' as 'udp', internalPort: 1, suggestedExternalPort: 0, lifetime: 1 }),
    ).toThrow(TypeError);
  });
});

const port = fc.integer({ min: 0, max: 65535 });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const responseArb: fc.Arbitrary<NatPmpResponse> = fc.oneof(
  fc.record({
    op: fc.constant('public-address' as const),
    resultCode: fc.constant(0),
    epoch: u32,
    publicIp: fc.ipV4(),
  }),
  fc.record({
    op: fc.constant('public-address' as const),
    resultCode: fc.integer({ min: 1, max: 0xffff }),
    epoch: u32,
    publicIp: fc.constant(undefined),
  }),
  fc.record({
    op: fc.constant('map' as const),
    protocol: fc.constantFrom('udp' as const, 'tcp' as const),
    resultCode: fc.integer({ min: 0, max: 0xffff }),
    epoch: u32,
    internalPort: port,
    externalPort: port,
    lifetime: u32,
  }),
);

describe('NAT-PMP properties', () => {
  it('decode(encode(response)) is the response', () => {
    fc.assert(
      fc.property(responseArb, (r) => {
        expect(decodeNatPmpResponse(encodeNatPmpResponse(r))).toEqual(r);
      }),
    );
  });

  it('decodeNatPmpRequest(encodeNatPmpMapRequest(x)) is x', () => {
    fc.assert(
      fc.property(fc.constantFrom('udp' as const, 'tcp' as const), port, port, u32, (protocol, i, e, l) => {
        const req = { protocol, internalPort: i, suggestedExternalPort: e, lifetime: l };
        expect(decodeNatPmpRequest(encodeNatPmpMapRequest(req))).toEqual({ op: 'map', ...req });
      }),
    );
  });

  it('isNatPmpResponse never throws, and is true exactly when decode succeeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 24 }), (b) => {
        const ok = isNatPmpResponse(b);
        let decoded = true;
        try {
          decodeNatPmpResponse(b);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
          decoded = false;
        }
        expect(ok).toBe(decoded);
      }),
      { numRuns: 2000 },
    );
    for (const v of [undefined, null, 'x', 1, {}, [0, 128], new Uint16Array(8)])
      expect(isNatPmpResponse(v)).toBe(false);
  });

  it('mutated answers decode or throw DecodeError, nothing else', () => {
    fc.assert(
      fc.property(
        responseArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (r, edits) => {
          const b = encodeNatPmpResponse(r);
          for (const [at, v] of edits) b[at % b.length] = v;
          try {
            decodeNatPmpResponse(b);
          } catch (e) {
            expect(e).toBeInstanceOf(DecodeError);
          }
        },
      ),
    );
  });
});
