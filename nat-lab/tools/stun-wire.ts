/**
 * The smallest STUN needed by nat-lab's probe and stand-in peer (RFC 8489 Binding, RFC 5780 attributes).
 * Deliberately independent of src/stun: the lab must be able to judge a NAT even while the library's own STUN
 * client is broken, and these files run inside namespaces as standalone scripts with no imports outside tools/.
 *
 * Binding request (20 bytes, plus an optional CHANGE-REQUEST attribute):
 *
 *    0                   1                   2                   3
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |0 0|  type 0x0001 (Binding req)  |   message length (bytes)      |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |                 magic cookie 0x2112A442                         |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   |              transaction id (96 bits, 12 bytes)                 |
 *   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 *   | attributes: type(16) length(16) value, padded to 4 bytes ...    |
 *
 * Success response type 0x0101. Address attributes (MAPPED-ADDRESS 0x0001, XOR-MAPPED-ADDRESS 0x0020,
 * RESPONSE-ORIGIN 0x802b, OTHER-ADDRESS 0x802c) are: 0x00, family (0x01 = IPv4), port(16), address(32); in the
 * XOR form the port is XORed with the cookie's top 16 bits and the address with the cookie. IPv4 only here.
 */

/** STUN constants, each with the reason it has this value. */
export const STUN = {
  /** RFC 8489 §5: fixed magic cookie; also how a STUN datagram is told apart from others. */
  cookie: 0x2112a442,
  /** RFC 8489 §5: header length in bytes. */
  headerLen: 20,
  /** RFC 8489 §18.2: Binding request / success response message types. */
  bindingRequest: 0x0001,
  bindingSuccess: 0x0101,
  /** RFC 8489 §18.3 / RFC 5780 §7: attribute types this file reads or writes. */
  attrMapped: 0x0001,
  attrChangeRequest: 0x0003,
  attrXorMapped: 0x0020,
  attrResponseOrigin: 0x802b,
  attrOtherAddress: 0x802c,
} as const;

export interface Endpoint {
  ip: string;
  port: number;
}

export interface BindingResponse {
  txid: string;
  mapped?: Endpoint;
  other?: Endpoint;
  origin?: Endpoint;
}

/** `ip:port`. */
export function fmt(e: Endpoint): string {
  return `${e.ip}:${e.port}`;
}

/** Parses `a.b.c.d:port`; undefined when malformed. Never throws. */
export function parseEndpoint(s: string): Endpoint | undefined {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s);
  if (!m) return undefined;
  const ip = m[1]!;
  const port = Number(m[2]);
  if (port > 65535 || ip.split('.').some((o) => Number(o) > 255)) return undefined;
  return { ip, port };
}

/** A Binding request with transaction id `txid` (12 bytes); `change` adds RFC 5780 CHANGE-REQUEST. */
export function bindingRequest(txid: Uint8Array, change?: { ip: boolean; port: boolean }): Uint8Array {
  const attrLen = change ? 8 : 0;
  const b = new Uint8Array(STUN.headerLen + attrLen);
  const v = new DataView(b.buffer);
  v.setUint16(0, STUN.bindingRequest);
  v.setUint16(2, attrLen);
  v.setUint32(4, STUN.cookie);
  b.set(txid.subarray(0, 12), 8);
  if (change) {
    v.setUint16(20, STUN.attrChangeRequest);
    v.setUint16(22, 4);
    v.setUint32(24, (change.ip ? 4 : 0) | (change.port ? 2 : 0));
  }
  return b;
}

/** True when `b` looks like a STUN message (top two bits zero, magic cookie at offset 4). Never throws. */
export function isStun(b: Uint8Array): boolean {
  return b.length >= STUN.headerLen && (b[0]! & 0xc0) === 0 && readU32(b, 4) === STUN.cookie;
}

/** Reads a Binding success response; undefined for anything else or anything malformed. Never throws. */
export function parseBindingResponse(b: Uint8Array): BindingResponse | undefined {
  if (!isStun(b) || readU16(b, 0) !== STUN.bindingSuccess) return undefined;
  const len = readU16(b, 2);
  if (STUN.headerLen + len > b.length) return undefined;
  const out: BindingResponse = { txid: hex(b.subarray(8, 20)) };
  let off = STUN.headerLen;
  const end = STUN.headerLen + len;
  while (off + 4 <= end) {
    const type = readU16(b, off);
    const alen = readU16(b, off + 2);
    const val = off + 4;
    if (val + alen > end) return undefined;
    if (alen >= 8 && b[val + 1] === 0x01) {
      let port = readU16(b, val + 2);
      let addr = readU32(b, val + 4);
      if (type === STUN.attrXorMapped) {
        port ^= STUN.cookie >>> 16;
        addr = (addr ^ STUN.cookie) >>> 0;
      }
      const ep = { ip: [addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255].join('.'), port };
      if (type === STUN.attrXorMapped) out.mapped = ep;
      else if (type === STUN.attrMapped) out.mapped ??= ep;
      else if (type === STUN.attrOtherAddress) out.other = ep;
      else if (type === STUN.attrResponseOrigin) out.origin = ep;
    }
    off = val + alen + ((4 - (alen % 4)) % 4);
  }
  return out;
}

export function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function readU16(b: Uint8Array, off: number): number {
  return ((b[off]! << 8) | b[off + 1]!) >>> 0;
}

function readU32(b: Uint8Array, off: number): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}
