/**
 * Value codecs for the STUN attributes a Binding client and server need (RFC 8489 §14). Pure functions over
 * Uint8Array; the TLV framing around these values lives in message.ts.
 *
 * (XOR-)MAPPED-ADDRESS value, RFC 8489 §14.1 / §14.2:
 *
 *   byte 0      1        2-3            4 ... (4 or 16 bytes)
 *   +--------+--------+---------------+---------------------------------+
 *   |  0x00  | family |     port      |  address (IPv4: 4, IPv6: 16)    |
 *   +--------+--------+---------------+---------------------------------+
 *   family 0x01 = IPv4 (value 8 bytes), 0x02 = IPv6 (value 20 bytes).
 *   XOR form: port ^= 0x2112 (top half of the cookie); IPv4 address ^= cookie;
 *             IPv6 address ^= cookie ‖ transaction ID (16 bytes).
 *
 * ERROR-CODE value, RFC 8489 §14.8:
 *
 *   byte 0-1      2                  3          4 ...
 *   +----------+-----------------+----------+-----------------------------+
 *   | reserved | 00000 | class(3) |  number  | reason phrase (UTF-8)       |
 *   +----------+-----------------+----------+-----------------------------+
 *   code = class × 100 + number (class 3-6, number 0-99).
 *
 * UNKNOWN-ATTRIBUTES (§14.13): a list of u16 attribute types. SOFTWARE (§14.14): UTF-8 text.
 */
import { DecodeError } from '../errors.js';
import { type AddrPort, ipFrom16, parseIPv4, parseIPv6 } from '../internal/addr.js';
import { readU16 } from '../internal/bytes.js';
import { AddressFamily, STUN } from './constants.js';

/** Value length of an IPv4 (XOR-)MAPPED-ADDRESS. */
export const ADDRESS_V4_LEN = 1 + 1 + 2 + 4;
/** Value length of an IPv6 (XOR-)MAPPED-ADDRESS. */
export const ADDRESS_V6_LEN = 1 + 1 + 2 + 16;

const COOKIE_BYTES = /* @__PURE__ */ new Uint8Array([0x21, 0x12, 0xa4, 0x42]);
const PORT_XOR = STUN.MAGIC_COOKIE >>> 16;
/** "0".."255", so formatting an IPv4 address does no number-to-string work. */
const DECIMAL = /* @__PURE__ */ Array.from({ length: 256 }, (_, i) => String(i));

const utf8Decoder = /* @__PURE__ */ new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const utf8Encoder = /* @__PURE__ */ new TextEncoder();

/** A decoded ERROR-CODE (plus UNKNOWN-ATTRIBUTES when the server sent it with error 420). */
export interface StunErrorInfo {
  /** class × 100 + number, e.g. 420. */
  readonly stunCode: number;
  /** The hundreds digit, 3-6 in a well-formed response. */
  readonly errorClass: number;
  /** The last two digits, 0-99 in a well-formed response. */
  readonly errorNumber: number;
  /** The reason phrase (UTF-8, invalid sequences replaced). */
  readonly reason: string;
  /** Attribute types the server did not understand (only with 420 Unknown Attribute). */
  readonly unknownAttributes?: readonly number[];
}

/**
 * An IP address as wire bytes: 4 for IPv4 (including IPv4-mapped IPv6, which AddrPort never keeps mapped), 16 for
 * IPv6. Throws TypeError when `ip` is not an IP address.
 */
export function ipToWire(ip: string): Uint8Array {
  const v4 = parseIPv4(ip);
  if (v4) return v4;
  const v6 = parseIPv6(ip);
  if (!v6) throw new TypeError(`"mapped.ip" is not an IP address: ${ip}`);
  let mapped = v6[10] === 0xff && v6[11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) if (v6[i] !== 0) mapped = false;
  return mapped ? v6.subarray(12) : v6;
}

/** Throws RangeError unless `port` is an integer in 0..65535. */
export function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 0xffff)
    throw new RangeError(`"mapped.port" must be an integer in 0..65535, got ${port}`);
}

/** Length of the (XOR-)MAPPED-ADDRESS value for `addr` (8 or 20). Throws TypeError for a non-IP. */
export function addressValueLen(addr: AddrPort): number {
  return ipToWire(addr.ip).length === 4 ? ADDRESS_V4_LEN : ADDRESS_V6_LEN;
}

/**
 * Writes a MAPPED-ADDRESS value (or, with `txId`, an XOR-MAPPED-ADDRESS value) at `off`; returns the offset after
 * it. Throws TypeError / RangeError for a bad address or port.
 */
export function encodeAddressValueInto(out: Uint8Array, off: number, addr: AddrPort, txId?: Uint8Array): number {
  checkPort(addr.port);
  return writeAddressValue(out, off, ipToWire(addr.ip), addr.port, txId);
}

/** encodeAddressValueInto with the address already in wire form (4 or 16 bytes) and the port already checked. */
export function writeAddressValue(
  out: Uint8Array,
  off: number,
  ip: Uint8Array,
  port: number,
  txId?: Uint8Array,
): number {
  const xor = txId !== undefined;
  out[off] = 0;
  out[off + 1] = ip.length === 4 ? AddressFamily.IPV4 : AddressFamily.IPV6;
  const p = xor ? port ^ PORT_XOR : port;
  out[off + 2] = p >>> 8;
  out[off + 3] = p & 0xff;
  for (let i = 0; i < ip.length; i++) {
    const mask = !xor ? 0 : i < 4 ? COOKIE_BYTES[i]! : txId[i - 4]!;
    out[off + 4 + i] = ip[i]! ^ mask;
  }
  return off + 4 + ip.length;
}

/**
 * Reads a MAPPED-ADDRESS value (or, with `txId`, an XOR-MAPPED-ADDRESS value). `where` and `offset` locate the
 * value in the message for the DecodeError. The reserved first byte is ignored (RFC 8489 §14.1 says receivers
 * must ignore it).
 */
export function decodeAddressValue(v: Uint8Array, where: string, offset: number, txId?: Uint8Array): AddrPort {
  if (v.length < 4) throw new DecodeError(where, `value is ${v.length} bytes, need at least 4`, offset);
  const family = v[1]!;
  const ipLen = family === AddressFamily.IPV4 ? 4 : family === AddressFamily.IPV6 ? 16 : 0;
  if (ipLen === 0) throw new DecodeError(where, `unknown address family 0x${family.toString(16)}`, offset + 1);
  if (v.length !== 4 + ipLen)
    throw new DecodeError(where, `family ${family} needs a ${4 + ipLen}-byte value, got ${v.length}`, offset);
  const xor = txId !== undefined;
  const port = readU16(v, 2) ^ (xor ? PORT_XOR : 0);
  if (ipLen === 4) {
    const [m0, m1, m2, m3] = xor ? [0x21, 0x12, 0xa4, 0x42] : [0, 0, 0, 0];
    const ip = `${DECIMAL[v[4]! ^ m0]}.${DECIMAL[v[5]! ^ m1]}.${DECIMAL[v[6]! ^ m2]}.${DECIMAL[v[7]! ^ m3]}`;
    return { ip, port };
  }
  const ip = new Uint8Array(16);
  for (let i = 0; i < 16; i++) ip[i] = v[4 + i]! ^ (!xor ? 0 : i < 4 ? COOKIE_BYTES[i]! : txId[i - 4]!);
  return { ip: ipFrom16(ip), port };
}

/** Encodes an ERROR-CODE value. Throws RangeError for a code outside 300-699 or an over-long reason. */
export function encodeErrorCodeValue(stunCode: number, reason: string): Uint8Array {
  if (!Number.isInteger(stunCode) || stunCode < 300 || stunCode > 699)
    throw new RangeError(`"code" must be an integer in 300..699, got ${stunCode}`);
  const text = utf8Encoder.encode(reason);
  if (text.length > STUN.MAX_REASON_BYTES)
    throw new RangeError(`"reason" must be at most ${STUN.MAX_REASON_BYTES} bytes of UTF-8, got ${text.length}`);
  const out = new Uint8Array(4 + text.length);
  out[2] = Math.floor(stunCode / 100);
  out[3] = stunCode % 100;
  out.set(text, 4);
  return out;
}

/** Decodes an ERROR-CODE value. Lenient: class and number are reported as sent, even outside their ranges. */
export function decodeErrorCodeValue(v: Uint8Array, offset: number): StunErrorInfo {
  if (v.length < 4) throw new DecodeError('stun/attr/ERROR-CODE', `value is ${v.length} bytes, need 4`, offset);
  const errorClass = v[2]! & 0x07;
  const errorNumber = v[3]!;
  return { stunCode: errorClass * 100 + errorNumber, errorClass, errorNumber, reason: decodeText(v.subarray(4)) };
}

/** Encodes an UNKNOWN-ATTRIBUTES value. */
export function encodeUnknownAttributesValue(types: readonly number[]): Uint8Array {
  const out = new Uint8Array(types.length * 2);
  types.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t > 0xffff) throw new RangeError(`"unknownAttributes[${i}]" is not a u16`);
    out[i * 2] = t >>> 8;
    out[i * 2 + 1] = t & 0xff;
  });
  return out;
}

/** Decodes an UNKNOWN-ATTRIBUTES value; an odd trailing byte is ignored. */
export function decodeUnknownAttributesValue(v: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i + 1 < v.length; i += 2) out.push(readU16(v, i));
  return out;
}

/** UTF-8 text of SOFTWARE, USERNAME, REALM or a reason phrase; invalid sequences become U+FFFD. */
export function decodeText(v: Uint8Array): string {
  return utf8Decoder.decode(v);
}

/** UTF-8 bytes of a SOFTWARE value. Throws RangeError when longer than RFC 8489 allows. */
export function encodeSoftwareValue(software: string): Uint8Array {
  const text = utf8Encoder.encode(software);
  if (text.length > STUN.MAX_SOFTWARE_BYTES)
    throw new RangeError(`"software" must be at most ${STUN.MAX_SOFTWARE_BYTES} bytes of UTF-8, got ${text.length}`);
  return text;
}
