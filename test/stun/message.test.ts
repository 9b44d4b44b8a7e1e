import { createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { toHex } from '../../src/internal/bytes.js';
import { AttrType, MessageType, STUN } from '../../src/stun/constants.js';
import { crc32 } from '../../src/stun/crc32.js';
import {
  type StunMessage,
  decodeBindingRequest,
  decodeBindingResponse,
  decodeMessage,
  encodeBindingError,
  encodeBindingRequest,
  encodeBindingSuccess,
  encodeMessage,
  getAttr,
  isStun,
} from '../../src/stun/message.js';
import { bytes, rfc5769, tailscale } from './vectors.js';

// @msimerson/stun is CommonJS without types; used here only as an independent implementation to compare with.
const msStun = createRequire(import.meta.url)('@msimerson/stun') as {
  createMessage(type: number, tx: Buffer): { addSoftware(s: string): void; addFingerprint(): void; toBuffer(): Buffer };
  decode(b: Buffer): {
    type: number;
    transactionId: Buffer;
    getXorAddress(): { address: string; port: number } | undefined;
    getAddress(): { address: string; port: number } | undefined;
    getSoftware(): string | undefined;
  };
};

/** Throws unless `fn` throws a DecodeError whose `where` starts with `where`. */
function expectDecodeError(fn: () => unknown, where: string): DecodeError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(DecodeError);
  const e = caught as DecodeError;
  expect(e.where.startsWith(where), `where=${e.where}, wanted ${where}`).toBe(true);
  return e;
}

/** RFC 8489 §14.5: HMAC-SHA1 over the message up to MESSAGE-INTEGRITY, length field covering the MI attribute. */
function messageIntegrityOk(b: Uint8Array, m: StunMessage, key: string): boolean {
  const mi = getAttr(m, AttrType.MESSAGE_INTEGRITY);
  if (!mi) return false;
  const covered = b.slice(0, mi.offset - STUN.ATTR_HEADER_LEN);
  const len = mi.offset + mi.value.length - STUN.HEADER_LEN;
  covered[2] = len >>> 8;
  covered[3] = len & 0xff;
  return toHex(createHmac('sha1', key).update(covered).digest()) === toHex(mi.value);
}

describe('RFC 5769 test vectors', () => {
  it('§2.1 sample request: attributes, FINGERPRINT and MESSAGE-INTEGRITY verify', () => {
    const b = bytes(rfc5769.request.hex);
    const m = decodeMessage(b);
    expect(m.type).toBe(MessageType.BINDING_REQUEST);
    expect(toHex(m.txId)).toBe(rfc5769.txId);
    expect(m.fingerprint).toBe(true);
    expect(m.attrs.map((a) => a.type)).toEqual([
      AttrType.SOFTWARE,
      AttrType.PRIORITY,
      AttrType.ICE_CONTROLLED,
      AttrType.USERNAME,
      AttrType.MESSAGE_INTEGRITY,
      AttrType.FINGERPRINT,
    ]);
    expect(new TextDecoder().decode(getAttr(m, AttrType.USERNAME)!.value)).toBe(rfc5769.request.username);
    expect(messageIntegrityOk(b, m, rfc5769.password)).toBe(true);
    const req = decodeBindingRequest(b);
    expect(req).toEqual({ txId: bytes(rfc5769.txId), software: rfc5769.request.software, fingerprint: true });
  });

  for (const [name, v] of [
    ['§2.2 IPv4 response', rfc5769.ipv4Response],
    ['§2.3 IPv6 response', rfc5769.ipv6Response],
  ] as const) {
    it(`${name}: XOR-MAPPED-ADDRESS ${v.mapped.ip} port ${v.mapped.port}, FINGERPRINT and MESSAGE-INTEGRITY`, () => {
      const b = bytes(v.hex);
      const r = decodeBindingResponse(b);
      expect(r).toEqual({
        kind: 'success',
        txId: bytes(rfc5769.txId),
        mapped: v.mapped,
        mappedAttr: AttrType.XOR_MAPPED_ADDRESS,
        software: v.software,
        fingerprint: true,
      });
      expect(messageIntegrityOk(b, decodeMessage(b), rfc5769.password)).toBe(true);
    });
  }

  it('every single-byte corruption covered by FINGERPRINT is rejected with a DecodeError', () => {
    for (const v of [rfc5769.request, rfc5769.ipv4Response, rfc5769.ipv6Response]) {
      const good = bytes(v.hex);
      const fpAttr = good.length - 8;
      for (let i = 0; i < good.length; i++) {
        if (i >= fpAttr && i < fpAttr + 4) continue; // the FINGERPRINT TLV header itself: see next test
        const bad = good.slice();
        bad[i]! ^= 0x01;
        expect(() => decodeMessage(bad), `byte ${i}`).toThrow(DecodeError);
      }
    }
  });

  it('a renamed FINGERPRINT attribute is just an unknown attribute (nothing to verify)', () => {
    const b = bytes(rfc5769.ipv4Response.hex);
    b[b.length - 8 + 1] = 0x29; // 0x8028 -> 0x8029
    expect(decodeMessage(b).fingerprint).toBe(false);
  });
});

describe("Tailscale's Binding request (golden)", () => {
  for (const c of tailscale.requests.cases) {
    it(`encodes ${c.name} byte for byte, and decodes back`, () => {
      const want = bytes(c.hex);
      const got = encodeBindingRequest(bytes(c.txId));
      expect(got.length).toBe(STUN.REQUEST_LEN);
      expect(got.length).toBe(40);
      expect(toHex(got)).toBe(toHex(want));
      expect(isStun(got)).toBe(true);
      expect(decodeBindingRequest(want)).toEqual({ txId: bytes(c.txId), software: 'tailnode', fingerprint: true });
    });
  }

  it('matches @msimerson/stun building the same request, for any TxID', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 12, maxLength: 12 }), (tx) => {
        const m = msStun.createMessage(MessageType.BINDING_REQUEST, Buffer.from(tx));
        m.addSoftware('tailnode');
        m.addFingerprint();
        expect(toHex(encodeBindingRequest(tx))).toBe(toHex(m.toBuffer()));
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a TxID that is not 12 bytes with RangeError', () => {
    expect(() => encodeBindingRequest(new Uint8Array(11))).toThrow(RangeError);
    expect(() => encodeBindingRequest('x' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('responses captured from real servers (Tailscale net/stun responseTests)', () => {
  for (const c of tailscale.responses.cases) {
    it(`${c.name} → ${c.mapped.ip} port ${c.mapped.port}`, () => {
      const r = decodeBindingResponse(bytes(c.hex));
      expect(r.kind).toBe('success');
      if (r.kind !== 'success') return;
      expect(toHex(r.txId)).toBe(c.txId);
      expect(r.mapped).toEqual(c.mapped);
      if (c.mappedAttr !== undefined) expect(r.mappedAttr).toBe(c.mappedAttr);
    });
  }
});

describe('isStun', () => {
  const cookie = [0x21, 0x12, 0xa4, 0x42];
  const msg = (first: number, len: number): Uint8Array => {
    const b = new Uint8Array(len);
    b[0] = first;
    b.set(cookie, 4);
    return b;
  };
  it.each([
    ['empty', new Uint8Array(0), false],
    ['20 zero bytes (no cookie)', new Uint8Array(20), false],
    ['19 bytes with cookie', msg(0, 19), false],
    ['20 bytes with cookie', msg(0, 20), true],
    ['with trailing bytes', msg(0, 23), true],
    ['top bit set', msg(0x80, 20), false],
    ['second-top bit set', msg(0x40, 20), false],
    ['byte 0 = 0x20 (top bits clear)', msg(0x20, 20), true],
    ['a disco packet ("TS💬")', new Uint8Array([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac, ...new Array(40).fill(0)]), false],
    ['a WireGuard initiation', new Uint8Array([1, 0, 0, 0, ...new Array(144).fill(0x21)]), false],
  ])('%s → %s', (_name, b, want) => {
    expect(isStun(b)).toBe(want);
  });

  it('accepts a Node Buffer and refuses non-bytes without throwing', () => {
    expect(isStun(Buffer.from(encodeBindingRequest(new Uint8Array(12))))).toBe(true);
    for (const junk of [undefined, null, 42, 'stun', {}, [0, 1], new Uint16Array(20)])
      expect(isStun(junk as unknown as Uint8Array)).toBe(false);
  });
});

describe('Binding success (our server side)', () => {
  const tx = bytes('a0a7aeb5bcc3cad1d8dfe6ed');

  it('IPv4: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, SOFTWARE, FINGERPRINT in 64 bytes', () => {
    const b = encodeBindingSuccess(tx, { ip: '203.0.113.9', port: 51820 });
    expect(b.length).toBe(64);
    expect(toHex(b.subarray(0, 20))).toBe('0101002c2112a442a0a7aeb5bcc3cad1d8dfe6ed');
    // XOR-MAPPED-ADDRESS value: the same bytes Tailscale's Go stun.Response writes for this TxID and mapping.
    expect(toHex(b.subarray(20, 32))).toBe('002000080001eb7eea12d54b');
    expect(toHex(b.subarray(32, 44))).toBe('000100080001ca6ccb007109');
    expect(toHex(b.subarray(44, 56))).toBe('802200086d657368736f636b');
    const m = decodeMessage(b);
    expect(m.fingerprint).toBe(true);
    expect(m.attrs.map((a) => a.type)).toEqual([
      AttrType.XOR_MAPPED_ADDRESS,
      AttrType.MAPPED_ADDRESS,
      AttrType.SOFTWARE,
      AttrType.FINGERPRINT,
    ]);
    const theirs = msStun.decode(Buffer.from(b));
    expect(theirs.getXorAddress()).toMatchObject({ address: '203.0.113.9', port: 51820 });
    expect(theirs.getAddress()).toMatchObject({ address: '203.0.113.9', port: 51820 });
  });

  it('IPv6: 88 bytes, XOR uses cookie ‖ TxID', () => {
    const b = encodeBindingSuccess(tx, { ip: '2001:db8::1:2', port: 41641 });
    expect(b.length).toBe(88);
    // Value bytes as Tailscale's Go stun.Response writes them for this TxID and mapping.
    expect(toHex(b.subarray(24, 44))).toBe('000283bb0113a9faa0a7aeb5bcc3cad1d8dee6ef');
    expect(decodeBindingResponse(b)).toMatchObject({ kind: 'success', mapped: { ip: '2001:db8::1:2', port: 41641 } });
    // @msimerson/stun's plain MAPPED-ADDRESS decoding agrees (its IPv6 XOR decoding does not: see README).
    expect(msStun.decode(Buffer.from(b)).getAddress()).toMatchObject({ address: '2001:db8::1:2', port: 41641 });
  });

  it('an IPv4-mapped IPv6 mapping is sent as IPv4', () => {
    const b = encodeBindingSuccess(tx, { ip: '::ffff:198.51.100.7', port: 9 });
    expect(b.length).toBe(64);
    expect(decodeBindingResponse(b)).toMatchObject({ mapped: { ip: '198.51.100.7', port: 9 } });
  });

  it('rejects a bad mapping with TypeError / RangeError', () => {
    expect(() => encodeBindingSuccess(tx, { ip: 'not-an-ip', port: 1 })).toThrow(TypeError);
    expect(() => encodeBindingSuccess(tx, { ip: '1.2.3.4', port: 70000 })).toThrow(RangeError);
    expect(() => encodeBindingSuccess(tx, { ip: '1.2.3.4', port: 1.5 })).toThrow(RangeError);
  });
});

describe('Binding error responses', () => {
  it('decodes a 438 built by @msimerson/stun (no FINGERPRINT) into class/number/reason', () => {
    const b = bytes('011100142112a4420102030405060708090a0b0c0009000f000004265374616c65204e6f6e636500');
    expect(decodeBindingResponse(b)).toEqual({
      kind: 'error',
      txId: bytes('0102030405060708090a0b0c'),
      error: { stunCode: 438, errorClass: 4, errorNumber: 38, reason: 'Stale Nonce' },
      fingerprint: false,
    });
  });

  it('round-trips 420 with UNKNOWN-ATTRIBUTES', () => {
    const tx = bytes('0102030405060708090a0b0c');
    const b = encodeBindingError(tx, 420, 'Unknown Attribute', { unknownAttributes: [0x0003, 0x0024] });
    expect(toHex(b.subarray(20, 24))).toBe('00090015');
    expect(toHex(b.subarray(24, 28))).toBe('00000414');
    expect(decodeBindingResponse(b)).toEqual({
      kind: 'error',
      txId: tx,
      error: {
        stunCode: 420,
        errorClass: 4,
        errorNumber: 20,
        reason: 'Unknown Attribute',
        unknownAttributes: [3, 0x24],
      },
      software: 'meshsock',
      fingerprint: true,
    });
  });

  it('refuses codes outside 300..699', () => {
    expect(() => encodeBindingError(new Uint8Array(12), 200, 'ok')).toThrow(RangeError);
    expect(() => encodeBindingError(new Uint8Array(12), 700, 'x')).toThrow(RangeError);
  });
});

describe('malformed input → DecodeError with a place', () => {
  const tx = new Uint8Array(12).fill(7);
  const resp = (): Uint8Array => encodeBindingSuccess(tx, { ip: '192.0.2.1', port: 1000 });
  const setLen = (b: Uint8Array, n: number): Uint8Array => {
    b[2] = n >>> 8;
    b[3] = n & 0xff;
    return b;
  };

  it.each([
    ['shorter than the header', () => resp().subarray(0, 19), 'stun/header'],
    ['top bits set', () => Object.assign(resp(), { 0: 0xc1 }), 'stun/header'],
    ['no magic cookie', () => Object.assign(resp(), { 4: 0 }), 'stun/header'],
    ['length not a multiple of 4', () => setLen(resp(), 45), 'stun/header'],
    ['length past the datagram', () => setLen(resp(), 48), 'stun/header'],
    ['attribute overruns the message', () => Object.assign(resp(), { 23: 0x40 }), 'stun/attr'],
  ])('%s', (_name, make, where) => {
    expectDecodeError(() => decodeMessage(make()), where);
    expectDecodeError(() => decodeBindingResponse(make()), where);
    expectDecodeError(() => decodeBindingRequest(make()), where);
  });

  const noFp = (attrs: { type: number; value: Uint8Array }[], type: number = MessageType.BINDING_SUCCESS): Uint8Array =>
    encodeMessage(type, tx, attrs, { fingerprint: false });

  it('FINGERPRINT that is not last, or not 4 bytes', () => {
    const b = encodeMessage(MessageType.BINDING_SUCCESS, tx, []);
    const notLast = new Uint8Array(b.length + 4);
    notLast.set(b);
    setLen(notLast, b.length + 4 - 20);
    notLast.set([0x80, 0x22, 0, 0], b.length); // an empty SOFTWARE after FINGERPRINT
    // FINGERPRINT covers the header, which now has another length: rebuild it over the new length.
    const fpAt = b.length - 8;
    const crc = (crc32(notLast, 0, fpAt) ^ STUN.FINGERPRINT_XOR) >>> 0;
    notLast.set([crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff], fpAt + 4);
    expectDecodeError(() => decodeMessage(notLast), 'stun/attr/FINGERPRINT');
    const wrongLen = noFp([{ type: AttrType.FINGERPRINT, value: new Uint8Array(8) }]);
    expectDecodeError(() => decodeMessage(wrongLen), 'stun/attr/FINGERPRINT');
  });

  it('bad (XOR-)MAPPED-ADDRESS values', () => {
    const fam3 = noFp([{ type: AttrType.XOR_MAPPED_ADDRESS, value: bytes('0003a147e112a643') }]);
    expectDecodeError(() => decodeBindingResponse(fam3), 'stun/attr/XOR-MAPPED-ADDRESS');
    const v6short = noFp([{ type: AttrType.XOR_MAPPED_ADDRESS, value: bytes('0002a147e112a643') }]);
    expectDecodeError(() => decodeBindingResponse(v6short), 'stun/attr/XOR-MAPPED-ADDRESS');
    const tiny = noFp([{ type: AttrType.MAPPED_ADDRESS, value: bytes('0001') }]);
    expectDecodeError(() => decodeBindingResponse(tiny), 'stun/attr/MAPPED-ADDRESS');
  });

  it('a success without an address, an error without ERROR-CODE, a short ERROR-CODE', () => {
    expectDecodeError(() => decodeBindingResponse(noFp([])), 'stun/response');
    expectDecodeError(() => decodeBindingResponse(noFp([], MessageType.BINDING_ERROR)), 'stun/response');
    const short = noFp([{ type: AttrType.ERROR_CODE, value: bytes('0004') }], MessageType.BINDING_ERROR);
    expectDecodeError(() => decodeBindingResponse(short), 'stun/attr/ERROR-CODE');
  });

  it('the wrong message type for each decoder', () => {
    const req = encodeBindingRequest(tx);
    expectDecodeError(() => decodeBindingResponse(req), 'stun/response');
    expectDecodeError(() => decodeBindingRequest(resp()), 'stun/request');
    const indication = noFp([], MessageType.BINDING_INDICATION);
    expectDecodeError(() => decodeBindingRequest(indication), 'stun/request');
    expectDecodeError(() => decodeBindingResponse(indication), 'stun/response');
  });
});

describe('lenient where it is safe', () => {
  const tx = new Uint8Array(12).fill(9);

  it('ignores bytes after the declared length', () => {
    const b = encodeBindingSuccess(tx, { ip: '192.0.2.1', port: 1 });
    const longer = new Uint8Array(b.length + 5);
    longer.set(b);
    longer.fill(0xee, b.length);
    expect(decodeBindingResponse(longer)).toMatchObject({ mapped: { ip: '192.0.2.1', port: 1 }, fingerprint: true });
  });

  it('uses the first of duplicate attributes and keeps unknown ones', () => {
    const a1 = new Uint8Array(8);
    const a2 = new Uint8Array(8);
    const addr = (ip: string, v: Uint8Array): Uint8Array => {
      const b = encodeBindingSuccess(tx, { ip, port: 5 });
      v.set(b.subarray(24, 32));
      return v;
    };
    const b = encodeMessage(MessageType.BINDING_SUCCESS, tx, [
      { type: 0x7777, value: bytes('010203') },
      { type: AttrType.XOR_MAPPED_ADDRESS, value: addr('192.0.2.1', a1) },
      { type: AttrType.XOR_MAPPED_ADDRESS, value: addr('192.0.2.2', a2) },
    ]);
    const m = decodeMessage(b);
    expect(getAttr(m, 0x7777)?.value).toEqual(bytes('010203'));
    expect(decodeBindingResponse(b)).toMatchObject({ mapped: { ip: '192.0.2.1', port: 5 } });
  });

  it('prefers XOR-MAPPED-ADDRESS 0x0020 over 0x8020 over MAPPED-ADDRESS', () => {
    const real = encodeBindingSuccess(tx, { ip: '192.0.2.1', port: 7 });
    const other = encodeBindingSuccess(tx, { ip: '192.0.2.2', port: 8 });
    const x1 = real.slice(24, 32);
    const x2 = other.slice(24, 32);
    const plain3 = encodeBindingSuccess(tx, { ip: '192.0.2.3', port: 9 }).slice(36, 44);
    const both = encodeMessage(MessageType.BINDING_SUCCESS, tx, [
      { type: AttrType.MAPPED_ADDRESS, value: plain3 },
      { type: AttrType.XOR_MAPPED_ADDRESS_ALT, value: x2 },
      { type: AttrType.XOR_MAPPED_ADDRESS, value: x1 },
    ]);
    expect(decodeBindingResponse(both)).toMatchObject({ mapped: { ip: '192.0.2.1', port: 7 }, mappedAttr: 0x0020 });
    const alt = encodeMessage(MessageType.BINDING_SUCCESS, tx, [
      { type: AttrType.MAPPED_ADDRESS, value: plain3 },
      { type: AttrType.XOR_MAPPED_ADDRESS_ALT, value: x2 },
    ]);
    expect(decodeBindingResponse(alt)).toMatchObject({ mapped: { ip: '192.0.2.2', port: 8 }, mappedAttr: 0x8020 });
  });
});

describe('CRC-32', () => {
  it('has the IEEE check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('agrees with node:zlib on random input and ranges', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (b, x, y) => {
        const [s, e] = [x % (b.length + 1), y % (b.length + 1)].sort((p, q) => p - q) as [number, number];
        expect(crc32(b, s, e)).toBe(zlibCrc32(b.subarray(s, e)) >>> 0);
      }),
      { numRuns: 300 },
    );
  });
});
