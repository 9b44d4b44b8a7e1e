/**
 * STUN message codec (RFC 8489) for the Binding method. Our Binding request is byte-for-byte the one Tailscale's
 * `net/stun` sends (tailscale-protocols.md §4.1), so derper and Headscale's STUN servers answer it; our decoders
 * read any RFC 5389/8489 server's answer. Pure functions over Uint8Array, no Node imports.
 *
 * Message (RFC 8489 §5), all integers big-endian:
 *
 *   byte 0       1       2       3       4       5       6       7       8 ........... 19
 *   +-------+-------+-------+-------+-------+-------+-------+-------+---------------------+
 *   |00|  message type  |    length     | 0x21  | 0x12  | 0xa4  | 0x42  |  transaction ID  |
 *   +-------+-------+-------+-------+-------+-------+-------+-------+---------------------+
 *   top two bits always 0   length = bytes of attributes after the 20-byte header (multiple of 4)
 *   message type 0x0001 Binding request, 0x0101 success response, 0x0111 error response, 0x0011 indication
 *
 *   then attributes, each (RFC 8489 §14):
 *   +---------------+---------------+------------------------------+------------------+
 *   |  type (u16)   | length (u16)  | value (length bytes)         | zero pad to 4    |
 *   +---------------+---------------+------------------------------+------------------+
 *
 * Tailscale's Binding request, exactly 40 bytes:
 *
 *   00 01 00 14  21 12 a4 42  <12-byte TxID>            header, length 20
 *   80 22 00 08  74 61 69 6c 6e 6f 64 65                SOFTWARE "tailnode"
 *   80 28 00 04  <CRC-32(bytes 0-31) ^ 0x5354554e>      FINGERPRINT
 *
 * Our success response: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, SOFTWARE "meshsock", FINGERPRINT (64 bytes for an
 * IPv4 mapping, 88 for IPv6). Responses are read from XOR-MAPPED-ADDRESS (0x0020), else the pre-RFC 0x8020 some
 * servers still send, else MAPPED-ADDRESS (0x0001).
 *
 * Decoding is lenient where it is safe: bytes after the declared length are ignored, unknown attributes are kept
 * as raw TLVs, padding bytes may hold anything (RFC 5769's vectors pad with spaces). It is strict where it matters:
 * the header, every attribute's bounds, and FINGERPRINT (checked whenever present; it must be the last attribute).
 * Decoders throw only DecodeError; returned attribute values are views into the input (copy to keep them past a
 * buffer reuse), while returned transaction IDs are copies.
 */
import { DecodeError } from '../errors.js';
import type { AddrPort } from '../internal/addr.js';
import { abytes, asU8, readU16, readU32, writeU16, writeU32 } from '../internal/bytes.js';
import {
  type StunErrorInfo,
  checkPort,
  decodeAddressValue,
  decodeErrorCodeValue,
  decodeText,
  decodeUnknownAttributesValue,
  encodeErrorCodeValue,
  encodeSoftwareValue,
  encodeUnknownAttributesValue,
  ipToWire,
  writeAddressValue,
} from './attributes.js';
import { AttrType, MessageType, STUN } from './constants.js';
import { crc32 } from './crc32.js';

/** One attribute as found in a message. `value` is a view into the decoded bytes. */
export interface StunAttr {
  readonly type: number;
  /** Offset of the value in the message, for error reporting. */
  readonly offset: number;
  readonly value: Uint8Array;
}

/** A decoded STUN message: header fields and its attributes in wire order. */
export interface StunMessage {
  /** Message type (method and class), e.g. 0x0101. */
  readonly type: number;
  /** Transaction ID (a copy, 12 bytes). */
  readonly txId: Uint8Array;
  readonly attrs: readonly StunAttr[];
  /** True when a FINGERPRINT attribute was present (it was verified, or decoding would have thrown). */
  readonly fingerprint: boolean;
}

/** A decoded Binding request (server side). */
export interface BindingRequest {
  readonly txId: Uint8Array;
  /** SOFTWARE, when the client sent it ("tailnode" for Tailscale and meshsock clients). */
  readonly software?: string;
  readonly fingerprint: boolean;
}

/** A decoded Binding response: success with the mapped address, or error with its ERROR-CODE. */
export type BindingResponse =
  | {
      readonly kind: 'success';
      readonly txId: Uint8Array;
      /** The reflexive transport address the server saw. */
      readonly mapped: AddrPort;
      /** Which attribute it came from: 0x0020, 0x8020 or 0x0001. */
      readonly mappedAttr: number;
      readonly software?: string;
      readonly fingerprint: boolean;
    }
  | {
      readonly kind: 'error';
      readonly txId: Uint8Array;
      readonly error: StunErrorInfo;
      readonly software?: string;
      readonly fingerprint: boolean;
    };

/** An attribute to encode; `value` is written as is and zero-padded. */
export interface AttrToEncode {
  readonly type: number;
  readonly value: Uint8Array;
}

const C0 = 0x21;
const C1 = 0x12;
const C2 = 0xa4;
const C3 = 0x42;

/**
 * Cheap demultiplexing test used on every datagram of the shared socket (DESIGN.md decision 2): at least 20 bytes,
 * the top two bits of byte 0 zero, and the magic cookie at offset 4. Never throws, whatever it is given.
 */
export function isStun(b: Uint8Array): boolean {
  return (
    b instanceof Uint8Array &&
    b.length >= STUN.HEADER_LEN &&
    (b[0]! & 0xc0) === 0 &&
    b[4] === C0 &&
    b[5] === C1 &&
    b[6] === C2 &&
    b[7] === C3
  );
}

const pad4 = (n: number): number => (n + 3) & ~3;
const hex4 = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

/** Decodes any STUN message: header checks, TLV walk, FINGERPRINT verification. Throws DecodeError. */
export function decodeMessage(input: Uint8Array): StunMessage {
  if (!(input instanceof Uint8Array)) throw new DecodeError('stun/header', 'input is not a Uint8Array');
  // A plain Uint8Array view of a Node Buffer: its subarrays are cheaper and the views we return are plain too.
  const b = asU8(input);
  if (b.length < STUN.HEADER_LEN)
    throw new DecodeError('stun/header', `need ${STUN.HEADER_LEN} bytes, got ${b.length}`, b.length);
  if ((b[0]! & 0xc0) !== 0) throw new DecodeError('stun/header', 'top two bits of the message type are not zero', 0);
  if (readU32(b, 4) !== STUN.MAGIC_COOKIE) throw new DecodeError('stun/header', 'magic cookie missing', 4);
  const length = readU16(b, 2);
  if (length % 4 !== 0) throw new DecodeError('stun/header', `length ${length} is not a multiple of 4`, 2);
  const end = STUN.HEADER_LEN + length;
  if (end > b.length)
    throw new DecodeError('stun/header', `length ${length} runs past the ${b.length}-byte datagram`, 2);

  const attrs: StunAttr[] = [];
  let fingerprint = false;
  let off = STUN.HEADER_LEN;
  while (off < end) {
    if (fingerprint) throw new DecodeError('stun/attr/FINGERPRINT', 'FINGERPRINT is not the last attribute', off);
    // `end - off` is a positive multiple of 4, so the attribute header always fits.
    const type = readU16(b, off);
    const len = readU16(b, off + 2);
    const valueAt = off + STUN.ATTR_HEADER_LEN;
    if (valueAt + pad4(len) > end)
      throw new DecodeError('stun/attr', `attribute ${hex4(type)} of length ${len} runs past the message`, off);
    if (type === AttrType.FINGERPRINT) {
      if (len !== STUN.FINGERPRINT_LEN)
        throw new DecodeError('stun/attr/FINGERPRINT', `value is ${len} bytes, need 4`, off + 2);
      const want = (crc32(b, 0, off) ^ STUN.FINGERPRINT_XOR) >>> 0;
      if (readU32(b, valueAt) !== want) throw new DecodeError('stun/attr/FINGERPRINT', 'CRC-32 mismatch', valueAt);
      fingerprint = true;
    }
    attrs.push({ type, offset: valueAt, value: b.subarray(valueAt, valueAt + len) });
    off = valueAt + pad4(len);
  }
  const txId = new Uint8Array(STUN.TXID_LEN);
  txId.set(b.subarray(8, STUN.HEADER_LEN));
  return { type: readU16(b, 0), txId, attrs, fingerprint };
}

/** The first attribute of `type`, if any (RFC 8489 §14: later duplicates are ignored). */
export function getAttr(m: StunMessage, type: number): StunAttr | undefined {
  for (const a of m.attrs) if (a.type === type) return a;
  return undefined;
}

function softwareOf(m: StunMessage): string | undefined {
  const a = getAttr(m, AttrType.SOFTWARE);
  return a && decodeText(a.value);
}

/**
 * Encodes a STUN message of `type` with `attrs` in order (zero padding), then FINGERPRINT unless
 * `fingerprint: false`. Throws RangeError when the message would not fit the 16-bit length.
 */
export function encodeMessage(
  type: number,
  txId: Uint8Array,
  attrs: readonly AttrToEncode[],
  opts: { fingerprint?: boolean } = {},
): Uint8Array {
  abytes(txId, 'txId', STUN.TXID_LEN);
  if (!Number.isInteger(type) || type < 0 || type > 0x3fff)
    throw new RangeError(`"type" must be a 14-bit message type, got ${type}`);
  const withFp = opts.fingerprint !== false;
  let length = withFp ? STUN.ATTR_HEADER_LEN + STUN.FINGERPRINT_LEN : 0;
  for (const a of attrs) {
    if (!Number.isInteger(a.type) || a.type < 0 || a.type > 0xffff)
      throw new RangeError(`attribute type must be a u16, got ${a.type}`);
    if (a.value.length > 0xffff) throw new RangeError(`attribute ${hex4(a.type)} value is over 65535 bytes`);
    length += STUN.ATTR_HEADER_LEN + pad4(a.value.length);
  }
  if (length > 0xffff) throw new RangeError(`message attributes total ${length} bytes, over 65535`);
  const out = new Uint8Array(STUN.HEADER_LEN + length);
  writeU16(out, 0, type);
  writeU16(out, 2, length);
  writeU32(out, 4, STUN.MAGIC_COOKIE);
  out.set(txId, 8);
  let off = STUN.HEADER_LEN;
  for (const a of attrs) {
    writeU16(out, off, a.type);
    writeU16(out, off + 2, a.value.length);
    out.set(a.value, off + STUN.ATTR_HEADER_LEN);
    off += STUN.ATTR_HEADER_LEN + pad4(a.value.length);
  }
  if (withFp) writeFingerprint(out, off);
  return out;
}

/** Writes the FINGERPRINT attribute at `off` (the message's last 8 bytes), covering bytes [0, off). */
function writeFingerprint(out: Uint8Array, off: number): void {
  writeU16(out, off, AttrType.FINGERPRINT);
  writeU16(out, off + 2, STUN.FINGERPRINT_LEN);
  writeU32(out, off + 4, (crc32(out, 0, off) ^ STUN.FINGERPRINT_XOR) >>> 0);
}

/** SOFTWARE of our responses, encoded once (TextEncoder costs more than the rest of a response). */
const SERVER_SOFTWARE_BYTES = /* @__PURE__ */ encodeSoftwareValue(STUN.SERVER_SOFTWARE);

const softwareValue = (software: string | undefined): Uint8Array =>
  software === undefined ? SERVER_SOFTWARE_BYTES : encodeSoftwareValue(software);

/** Header + SOFTWARE "tailnode" of Tailscale's request; the TxID and FINGERPRINT are filled in per request. */
const REQUEST_TEMPLATE = /* @__PURE__ */ (() => {
  const t = new Uint8Array(STUN.REQUEST_LEN);
  writeU16(t, 0, MessageType.BINDING_REQUEST);
  writeU16(t, 2, STUN.REQUEST_LEN - STUN.HEADER_LEN);
  writeU32(t, 4, STUN.MAGIC_COOKIE);
  writeU16(t, 20, AttrType.SOFTWARE);
  writeU16(t, 22, STUN.CLIENT_SOFTWARE.length);
  for (let i = 0; i < STUN.CLIENT_SOFTWARE.length; i++) t[24 + i] = STUN.CLIENT_SOFTWARE.charCodeAt(i);
  return t;
})();

/**
 * Tailscale's 40-byte Binding request: type 0x0001, SOFTWARE="tailnode", FINGERPRINT. `txId` must be 12 random
 * bytes (RangeError otherwise).
 */
export function encodeBindingRequest(txId: Uint8Array): Uint8Array {
  abytes(txId, 'txId', STUN.TXID_LEN);
  const out = REQUEST_TEMPLATE.slice();
  out.set(txId, 8);
  writeFingerprint(out, STUN.REQUEST_LEN - STUN.ATTR_HEADER_LEN - STUN.FINGERPRINT_LEN);
  return out;
}

/**
 * Decodes a Binding request (type 0x0001), from any client: SOFTWARE and FINGERPRINT are optional, and a
 * FINGERPRINT that is present must be right. Throws DecodeError.
 */
export function decodeBindingRequest(b: Uint8Array): BindingRequest {
  const m = decodeMessage(b);
  if (m.type !== MessageType.BINDING_REQUEST)
    throw new DecodeError('stun/request', `not a Binding request (type ${hex4(m.type)})`, 0);
  const software = softwareOf(m);
  return software === undefined
    ? { txId: m.txId, fingerprint: m.fingerprint }
    : { txId: m.txId, software, fingerprint: m.fingerprint };
}

/**
 * A Binding success response telling the client `mapped`: XOR-MAPPED-ADDRESS, MAPPED-ADDRESS (for RFC 3489-era
 * clients), SOFTWARE, FINGERPRINT. Throws TypeError / RangeError for a bad address, port or txId.
 */
export function encodeBindingSuccess(txId: Uint8Array, mapped: AddrPort, opts: { software?: string } = {}): Uint8Array {
  abytes(txId, 'txId', STUN.TXID_LEN);
  checkPort(mapped.port);
  const ip = ipToWire(mapped.ip);
  const valueLen = 4 + ip.length;
  const xorValue = new Uint8Array(valueLen);
  writeAddressValue(xorValue, 0, ip, mapped.port, txId);
  const plainValue = new Uint8Array(valueLen);
  writeAddressValue(plainValue, 0, ip, mapped.port);
  return encodeMessage(MessageType.BINDING_SUCCESS, txId, [
    { type: AttrType.XOR_MAPPED_ADDRESS, value: xorValue },
    { type: AttrType.MAPPED_ADDRESS, value: plainValue },
    { type: AttrType.SOFTWARE, value: softwareValue(opts.software) },
  ]);
}

/**
 * A Binding error response: ERROR-CODE (300-699), UNKNOWN-ATTRIBUTES when given (for 420), SOFTWARE, FINGERPRINT.
 */
export function encodeBindingError(
  txId: Uint8Array,
  stunCode: number,
  reason: string,
  opts: { unknownAttributes?: readonly number[]; software?: string } = {},
): Uint8Array {
  const attrs: AttrToEncode[] = [{ type: AttrType.ERROR_CODE, value: encodeErrorCodeValue(stunCode, reason) }];
  if (opts.unknownAttributes)
    attrs.push({ type: AttrType.UNKNOWN_ATTRIBUTES, value: encodeUnknownAttributesValue(opts.unknownAttributes) });
  attrs.push({ type: AttrType.SOFTWARE, value: softwareValue(opts.software) });
  return encodeMessage(MessageType.BINDING_ERROR, txId, attrs);
}

/**
 * Decodes a Binding response. A success (0x0101) yields the mapped address from XOR-MAPPED-ADDRESS (0x0020, then
 * 0x8020) or else MAPPED-ADDRESS, IPv4 or IPv6; an error (0x0111) yields its ERROR-CODE. Throws DecodeError for
 * anything else, a success without an address, or an error without ERROR-CODE.
 */
export function decodeBindingResponse(b: Uint8Array): BindingResponse {
  const m = decodeMessage(b);
  const software = softwareOf(m);
  const extra = software === undefined ? { fingerprint: m.fingerprint } : { software, fingerprint: m.fingerprint };
  if (m.type === MessageType.BINDING_SUCCESS) {
    const xor = getAttr(m, AttrType.XOR_MAPPED_ADDRESS) ?? getAttr(m, AttrType.XOR_MAPPED_ADDRESS_ALT);
    if (xor) {
      const where = xor.type === AttrType.XOR_MAPPED_ADDRESS ? 'XOR-MAPPED-ADDRESS' : 'XOR-MAPPED-ADDRESS(0x8020)';
      const mapped = decodeAddressValue(xor.value, `stun/attr/${where}`, xor.offset, m.txId);
      return { kind: 'success', txId: m.txId, mapped, mappedAttr: xor.type, ...extra };
    }
    const plain = getAttr(m, AttrType.MAPPED_ADDRESS);
    if (plain) {
      const mapped = decodeAddressValue(plain.value, 'stun/attr/MAPPED-ADDRESS', plain.offset);
      return { kind: 'success', txId: m.txId, mapped, mappedAttr: plain.type, ...extra };
    }
    throw new DecodeError('stun/response', 'success response carries no (XOR-)MAPPED-ADDRESS', STUN.HEADER_LEN);
  }
  if (m.type === MessageType.BINDING_ERROR) {
    const ec = getAttr(m, AttrType.ERROR_CODE);
    if (!ec) throw new DecodeError('stun/response', 'error response carries no ERROR-CODE', STUN.HEADER_LEN);
    const info = decodeErrorCodeValue(ec.value, ec.offset);
    const ua = getAttr(m, AttrType.UNKNOWN_ATTRIBUTES);
    const error: StunErrorInfo = ua ? { ...info, unknownAttributes: decodeUnknownAttributesValue(ua.value) } : info;
    return { kind: 'error', txId: m.txId, error, ...extra };
  }
  throw new DecodeError('stun/response', `not a Binding response (type ${hex4(m.type)})`, 0);
}
