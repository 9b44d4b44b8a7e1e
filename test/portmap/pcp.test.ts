import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { ipFrom16 } from '../../src/internal/addr.js';
import { fromHex, toHex } from '../../src/internal/bytes.js';
import { PcpResult } from '../../src/portmap/constants.js';
import {
  decodePcpRequest,
  decodePcpResponse,
  encodePcpAnnounceRequest,
  encodePcpMapRequest,
  encodePcpResponse,
  isPcpResponse,
  pcpResultName,
} from '../../src/portmap/pcp.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/portmap/tailscale.json', import.meta.url), 'utf8')) as {
  pcp: Array<{
    hex: string;
    resultCode: number;
    lifetime: number;
    epoch: number;
    internalPort: number;
    externalIp: string;
    externalPort: number;
    nonce: string;
  }>;
};

const NONCE = fromHex('0102030405060708090a0b0c');

// Golden vectors written from RFC 6887 §7.1 (request header), §7.2 (response header), §11.1 (MAP) and §14.1
// (ANNOUNCE), one field per hex group.
describe('PCP golden vectors (RFC 6887)', () => {
  it('ANNOUNCE request: v2 | opcode 0 | reserved | lifetime 0 | client ::ffff:192.168.1.10', () => {
    expect(toHex(encodePcpAnnounceRequest({ clientIp: '192.168.1.10' }))).toBe(
      ['02', '00', '0000', '00000000', '00000000000000000000ffffc0a8010a'].join(''),
    );
  });

  it('MAP request: header, nonce, UDP, internal 40000, suggested 40000, suggested IP ::ffff:0.0.0.0', () => {
    const b = encodePcpMapRequest({
      lifetime: 7200,
      clientIp: '192.168.1.10',
      nonce: NONCE,
      protocol: 17,
      internalPort: 40000,
      externalPort: 40000,
      externalIp: '0.0.0.0',
    });
    expect(toHex(b)).toBe(
      [
        '02',
        '01',
        '0000', // version 2, R=0 opcode MAP, reserved
        '00001c20', // requested lifetime 7200
        '00000000000000000000ffffc0a8010a', // client IP
        '0102030405060708090a0b0c', // mapping nonce
        '11',
        '000000', // protocol UDP, reserved
        '9c40',
        '9c40', // internal port, suggested external port
        '00000000000000000000ffff00000000', // suggested external IP: none
      ].join(''),
    );
    expect(b.length).toBe(60);
    const req = decodePcpRequest(b);
    expect(req.opcode).toBe('map');
    expect(req).toMatchObject({
      lifetime: 7200,
      clientIp: '192.168.1.10',
      map: { protocol: 17, internalPort: 40000, externalIp: '0.0.0.0' },
    });
  });

  it('MAP response: R=1, result, lifetime, epoch, reserved, then the assigned port and address', () => {
    const b = fromHex(
      [
        '02',
        '81',
        '00',
        '00',
        '00001c20',
        '00000005',
        '000000000000000000000000',
        '0102030405060708090a0b0c',
        '11000000',
        '9c40',
        '9c41',
        '00000000000000000000ffffc6120102',
      ].join(''),
    );
    expect(isPcpResponse(b)).toBe(true);
    const r = decodePcpResponse(b);
    expect(r).toMatchObject({ opcode: 'map', code: 1, resultCode: 0, lifetime: 7200, epoch: 5 });
    expect(r.map).toMatchObject({ protocol: 17, internalPort: 40000, externalPort: 40001, externalIp: '198.18.1.2' });
    expect(toHex(r.map!.nonce)).toBe(toHex(NONCE));
  });

  it('ANNOUNCE answers: success, NOT_AUTHORIZED, ADDRESS_MISMATCH', () => {
    for (const [code, name] of [
      [0, 'SUCCESS'],
      [2, 'NOT_AUTHORIZED'],
      [12, 'ADDRESS_MISMATCH'],
    ] as const) {
      const r = decodePcpResponse(
        fromHex(`0280 00 ${code.toString(16).padStart(2, '0')} 00000000 00000e10 000000000000000000000000`),
      );
      expect(r).toEqual({ opcode: 'announce', code: 0, resultCode: code, lifetime: 0, epoch: 3600, map: undefined });
      expect(pcpResultName(code)).toBe(name);
    }
    expect(PcpResult.NOT_AUTHORIZED).toBe(2);
    expect(PcpResult.ADDRESS_MISMATCH).toBe(12);
  });

  it('a header-only MAP error answer has no payload', () => {
    const r = decodePcpResponse(fromHex('0281 00 08 0000001e 00000005 000000000000000000000000'));
    expect(r).toMatchObject({ opcode: 'map', resultCode: PcpResult.NO_RESOURCES, lifetime: 30, map: undefined });
  });

  it("Tailscale's captured MAP response (pcp_test.go)", () => {
    for (const v of vectors.pcp) {
      const r = decodePcpResponse(fromHex(v.hex));
      expect(r).toMatchObject({ opcode: 'map', resultCode: v.resultCode, lifetime: v.lifetime, epoch: v.epoch });
      expect(r.map).toMatchObject({
        internalPort: v.internalPort,
        externalPort: v.externalPort,
        externalIp: v.externalIp,
      });
      expect(toHex(r.map!.nonce)).toBe(v.nonce);
    }
  });

  it('rejects short, unaligned, oversized, wrong-version, request and payload-less success datagrams', () => {
    const hdr = '0281 0000 00001c20 00000005 000000000000000000000000';
    for (const hex of [
      '0281',
      `${hdr}00`,
      '0201 0000 00001c20 00000000000000000000ffffc0a8010a',
      hdr.replace(/^02/, '01'),
      hdr,
    ]) {
      expect(() => decodePcpResponse(fromHex(hex)), hex).toThrow(DecodeError);
      expect(isPcpResponse(fromHex(hex))).toBe(false);
    }
    expect(isPcpResponse(new Uint8Array(1104).fill(2))).toBe(false);
  });

  it('rejects bad arguments', () => {
    const base = {
      lifetime: 1,
      clientIp: '192.168.1.10',
      nonce: NONCE,
      protocol: 17,
      internalPort: 1,
      externalPort: 0,
      externalIp: '0.0.0.0',
    };
    expect(() => encodePcpMapRequest({ ...base, nonce: new Uint8Array(11) })).toThrow(RangeError);
    expect(() => encodePcpMapRequest({ ...base, clientIp: 'nope' })).toThrow(TypeError);
    expect(() => encodePcpMapRequest({ ...base, internalPort: -1 })).toThrow(RangeError);
    expect(() => encodePcpMapRequest({ ...base, lifetime: 2 ** 32 })).toThrow(RangeError);
  });
});

const ip16 = fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => ipFrom16(b));
const mapArb = fc.record({
  nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  protocol: fc.integer({ min: 0, max: 255 }),
  internalPort: fc.integer({ min: 0, max: 65535 }),
  externalPort: fc.integer({ min: 0, max: 65535 }),
  externalIp: fc.oneof(fc.ipV4(), ip16),
});

describe('PCP properties', () => {
  it('decode(encode(MAP response)) is the response', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.nat(), fc.nat(), mapArb, (resultCode, lifetime, epoch, map) => {
        const r = decodePcpResponse(encodePcpResponse({ opcode: 'map', code: 1, resultCode, lifetime, epoch, map }));
        expect({ ...r, map: { ...r.map!, nonce: Array.from(r.map!.nonce) } }).toEqual({
          opcode: 'map',
          code: 1,
          resultCode,
          lifetime,
          epoch,
          map: { ...map, nonce: Array.from(map.nonce) },
        });
      }),
    );
  });

  it('decodePcpRequest(encodePcpMapRequest(x)) is x', () => {
    fc.assert(
      fc.property(fc.nat(), fc.ipV4(), mapArb, (lifetime, clientIp, map) => {
        const r = decodePcpRequest(encodePcpMapRequest({ lifetime, clientIp, ...map }));
        expect(r.opcode).toBe('map');
        if (r.opcode === 'map') {
          expect(r.clientIp).toBe(clientIp);
          expect({ ...r.map, nonce: Array.from(r.map.nonce) }).toEqual({ ...map, nonce: Array.from(map.nonce) });
        }
      }),
    );
  });

  it('isPcpResponse never throws, and is true exactly when decode succeeds', () => {
    const pcpLike = fc.uint8Array({ minLength: 0, maxLength: 72 }).map((b) => {
      const out = b.slice();
      if (out.length > 1) {
        out[0] = 2;
        out[1]! |= 0x80;
      }
      return out;
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 72 }), pcpLike), (b) => {
        let decoded = true;
        try {
          decodePcpResponse(b);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
          decoded = false;
        }
        expect(isPcpResponse(b)).toBe(decoded);
      }),
      { numRuns: 2000 },
    );
    for (const v of [undefined, null, 'x', 2, {}, new Array(24).fill(2)]) expect(isPcpResponse(v)).toBe(false);
  });
});
