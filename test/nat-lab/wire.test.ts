/**
 * nat-lab's own small STUN / NAT-PMP / PCP codecs (nat-lab/tools/*-wire.ts), which the probe and the stand-in peer
 * use inside namespaces. Golden vectors: RFC 5769 (test/vectors/stun/rfc5769.json, shared with src/stun's tests)
 * and byte layouts written out from RFC 6886 §3.3 and RFC 6887 §7.1/§11.1.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bindingRequest, isStun, parseBindingResponse, parseEndpoint } from '../../nat-lab/tools/stun-wire.js';
import {
  natpmpExternalRequest,
  natpmpMapRequest,
  parseNatpmpExternal,
  parseNatpmpMap,
  parsePcpMap,
  pcpMapRequest,
} from '../../nat-lab/tools/portmap-wire.js';

const V = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'vectors', 'stun', 'rfc5769.json'), 'utf8')) as {
  txId: string;
  request: { hex: string };
  ipv4Response: { hex: string; mapped: { ip: string; port: number } };
  ipv6Response: { hex: string };
};
const bytes = (hex: string): Uint8Array => Uint8Array.from(Buffer.from(hex.replace(/\s+/g, ''), 'hex'));
const hexOf = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('nat-lab stun-wire', () => {
  it('reads XOR-MAPPED-ADDRESS from the RFC 5769 §2.2 IPv4 response', () => {
    const r = parseBindingResponse(bytes(V.ipv4Response.hex));
    expect(r).toEqual({ txid: V.txId, mapped: V.ipv4Response.mapped });
  });

  it('returns no mapped address for the IPv6 response (IPv4 only) and nothing for a request', () => {
    expect(parseBindingResponse(bytes(V.ipv6Response.hex))).toEqual({ txid: V.txId });
    expect(parseBindingResponse(bytes(V.request.hex))).toBeUndefined();
    expect(isStun(bytes(V.request.hex))).toBe(true);
  });

  it('writes a 20-byte Binding request, and CHANGE-REQUEST (RFC 5780 §7.2) when asked', () => {
    const tx = bytes(V.txId);
    expect(hexOf(bindingRequest(tx))).toBe(`000100002112a442${V.txId}`);
    expect(hexOf(bindingRequest(tx, { ip: true, port: true }))).toBe(`000100082112a442${V.txId}0003000400000006`);
    expect(hexOf(bindingRequest(tx, { ip: false, port: true }))).toBe(`000100082112a442${V.txId}0003000400000002`);
  });

  it('rejects truncated and corrupted responses without throwing', () => {
    const full = bytes(V.ipv4Response.hex);
    for (let n = 0; n < full.length; n++) expect(() => parseBindingResponse(full.subarray(0, n))).not.toThrow();
    expect(parseBindingResponse(full.subarray(0, 30))).toBeUndefined(); // length field says 60
  });

  it('never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        isStun(b);
        parseBindingResponse(b);
        parseNatpmpMap(b);
        parseNatpmpExternal(b);
        parsePcpMap(b);
      }),
    );
  });

  it('parses endpoints strictly', () => {
    expect(parseEndpoint('203.0.113.1:3478')).toEqual({ ip: '203.0.113.1', port: 3478 });
    for (const bad of ['203.0.113.1', '203.0.113.256:1', '1.2.3.4:70000', 'host:80', '[::1]:80'])
      expect(parseEndpoint(bad)).toBeUndefined();
  });
});

describe('nat-lab portmap-wire', () => {
  it('NAT-PMP UDP map request (RFC 6886 §3.3): version 0, opcode 1, ports, lifetime', () => {
    expect(hexOf(natpmpMapRequest(40000, 40001, 60))).toBe('000100009c409c410000003c');
    expect(hexOf(natpmpExternalRequest())).toBe('0000');
  });

  it('NAT-PMP responses', () => {
    expect(parseNatpmpMap(bytes('00810000 00000010 9c40 a000 0000003c'))).toEqual({
      result: 0,
      internalPort: 40000,
      externalPort: 40960,
      lifetime: 60,
    });
    expect(parseNatpmpExternal(bytes('00800000 00000010 c6120102'))).toEqual({ result: 0, ip: '198.18.1.2' });
    expect(parseNatpmpMap(bytes('00820000 00000010 9c40 a000 0000003c'))).toBeUndefined(); // TCP opcode
  });

  it('PCP MAP request (RFC 6887 §7.1, §11.1): 60 bytes, v2, client IP as IPv4-mapped, nonce, UDP, ports', () => {
    const nonce = bytes('0102030405060708090a0b0c');
    const req = pcpMapRequest('192.168.1.10', nonce, 40000, 40000, 120);
    expect(hexOf(req)).toBe(
      '02010000' +
        '00000078' +
        '00000000000000000000ffffc0a8010a' +
        '0102030405060708090a0b0c' +
        '11000000' +
        '9c409c40' +
        '00000000000000000000ffff00000000',
    );
  });

  it('PCP MAP response', () => {
    const res = bytes(
      '02810000' +
        '00000078' +
        '00000005' +
        '000000000000000000000000' +
        '0102030405060708090a0b0c' +
        '11000000' +
        '9c409c41' +
        '00000000000000000000ffffc6120102',
    );
    expect(parsePcpMap(res)).toEqual({
      result: 0,
      lifetime: 120,
      internalPort: 40000,
      externalPort: 40001,
      externalIp: '198.18.1.2',
    });
  });
});
