/**
 * NAT-PMP (RFC 6886) codec: public-address and port-mapping requests and responses. Pure functions over
 * Uint8Array, big-endian, no Node imports. Requests are sent to the gateway's UDP port 5351.
 *
 * Public address request (2 bytes, §3.2)        Public address response (12 bytes, §3.2)
 *    0       1                                     0       1       2       3
 *   +-------+-------+                             +-------+-------+-------+-------+
 *   | vers=0| op=0  |                             | vers=0|op=128 |  result code  |
 *   +-------+-------+                             +-------+-------+-------+-------+
 *                                                 |  seconds since start of epoch |
 *                                                 +-------+-------+-------+-------+
 *                                                 |  external IPv4 address        |
 *                                                 +-------+-------+-------+-------+
 *
 * Map request (12 bytes, §3.3)                    Map response (16 bytes, §3.3)
 *   +-------+-------+-------+-------+             +-------+-------+-------+-------+
 *   | vers=0| op=1/2|   reserved=0  |             | vers=0|op=129/130 result code |
 *   +-------+-------+-------+-------+             +-------+-------+-------+-------+
 *   | internal port | suggested ext |             |  seconds since start of epoch |
 *   +-------+-------+-------+-------+             +-------+-------+-------+-------+
 *   | requested lifetime (seconds)  |             | internal port | mapped ext pt |
 *   +-------+-------+-------+-------+             +-------+-------+-------+-------+
 *                                                 | granted lifetime (seconds)    |
 *                                                 +-------+-------+-------+-------+
 *
 * op 1 maps UDP, 2 TCP; a response's op is the request's + 128. Lifetime 0 with suggested external port 0 deletes
 * the mapping (§3.4). A non-zero result may come in the 8-byte error form (version, op, result, epoch) only
 * (§3.5): then the decoder leaves the remaining fields undefined. Longer datagrams are accepted (trailing bytes
 * ignored, for forward compatibility); shorter ones and requests are a DecodeError.
 */
import { DecodeError } from '../errors.js';
import { parseIPv4 } from '../internal/addr.js';
import { readU16, readU32, writeU16, writeU32 } from '../internal/bytes.js';
import { NAT_PMP, NatPmpResult } from './constants.js';

/** Transport protocol of a NAT-PMP mapping. */
export type NatPmpTransport = 'udp' | 'tcp';

/** A decoded NAT-PMP request (what a gateway receives). */
export type NatPmpRequest =
  | { readonly op: 'public-address' }
  | {
      readonly op: 'map';
      readonly protocol: NatPmpTransport;
      readonly internalPort: number;
      /** 0 = no preference. */
      readonly suggestedExternalPort: number;
      /** Seconds; 0 deletes. */
      readonly lifetime: number;
    };

/** A decoded NAT-PMP response. Fields after the epoch are undefined in the short error form (§3.5). */
export type NatPmpResponse =
  | {
      readonly op: 'public-address';
      readonly resultCode: number;
      /** Seconds since the gateway's port-mapping table was (re)initialised. */
      readonly epoch: number;
      readonly publicIp: string | undefined;
    }
  | {
      readonly op: 'map';
      readonly protocol: NatPmpTransport;
      readonly resultCode: number;
      readonly epoch: number;
      readonly internalPort: number | undefined;
      readonly externalPort: number | undefined;
      /** Granted lifetime in seconds. */
      readonly lifetime: number | undefined;
    };

function u16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff)
    throw new RangeError(`"${name}" must be an integer 0..65535, got ${v}`);
}

function u32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new RangeError(`"${name}" must be an integer 0..4294967295, got ${v}`);
}

function mapOp(protocol: NatPmpTransport): number {
  if (protocol === 'udp') return NAT_PMP.OP_MAP_UDP;
  if (protocol === 'tcp') return NAT_PMP.OP_MAP_TCP;
  throw new TypeError(`"protocol" must be "udp" or "tcp", got ${String(protocol)}`);
}

/** The 2-byte public-address request (§3.2). */
export function encodeNatPmpPublicAddressRequest(): Uint8Array {
  return new Uint8Array([NAT_PMP.VERSION, NAT_PMP.OP_PUBLIC_ADDRESS]);
}

/**
 * A 12-byte mapping request (§3.3). `lifetime` 0 with `suggestedExternalPort` 0 deletes the mapping (§3.4).
 * Throws RangeError/TypeError for out-of-range arguments.
 */
export function encodeNatPmpMapRequest(req: {
  protocol: NatPmpTransport;
  internalPort: number;
  suggestedExternalPort: number;
  lifetime: number;
}): Uint8Array {
  const op = mapOp(req.protocol);
  u16('internalPort', req.internalPort);
  u16('suggestedExternalPort', req.suggestedExternalPort);
  u32('lifetime', req.lifetime);
  const b = new Uint8Array(NAT_PMP.MAP_REQUEST_LEN);
  b[0] = NAT_PMP.VERSION;
  b[1] = op;
  writeU16(b, 4, req.internalPort);
  writeU16(b, 6, req.suggestedExternalPort);
  writeU32(b, 8, req.lifetime);
  return b;
}

/** Decodes a request (the gateway's side; used by test gateways). Throws DecodeError. */
export function decodeNatPmpRequest(b: Uint8Array): NatPmpRequest {
  if (b.length < NAT_PMP.PUBLIC_ADDRESS_REQUEST_LEN) throw new DecodeError('nat-pmp/request', 'too short', 0);
  if (b[0] !== NAT_PMP.VERSION) throw new DecodeError('nat-pmp/request', `version ${b[0]}`, 0);
  const op = b[1]!;
  if (op === NAT_PMP.OP_PUBLIC_ADDRESS) return { op: 'public-address' };
  if (op !== NAT_PMP.OP_MAP_UDP && op !== NAT_PMP.OP_MAP_TCP)
    throw new DecodeError('nat-pmp/request', `unknown opcode ${op}`, 1);
  if (b.length < NAT_PMP.MAP_REQUEST_LEN)
    throw new DecodeError('nat-pmp/request/map', `need ${NAT_PMP.MAP_REQUEST_LEN} bytes, got ${b.length}`, b.length);
  return {
    op: 'map',
    protocol: op === NAT_PMP.OP_MAP_UDP ? 'udp' : 'tcp',
    internalPort: readU16(b, 4),
    suggestedExternalPort: readU16(b, 6),
    lifetime: readU32(b, 8),
  };
}

/**
 * Encodes a response (the gateway's side; used by test gateways and for round-trip tests). A response whose
 * optional fields are all undefined is written in the 8-byte error form.
 */
export function encodeNatPmpResponse(res: NatPmpResponse): Uint8Array {
  u16('resultCode', res.resultCode);
  u32('epoch', res.epoch);
  if (res.op === 'public-address') {
    if (res.publicIp === undefined) return header(NAT_PMP.RESPONSE_BIT | NAT_PMP.OP_PUBLIC_ADDRESS, res);
    const ip = parseIPv4(res.publicIp);
    if (!ip) throw new TypeError(`"publicIp" must be an IPv4 address, got ${res.publicIp}`);
    const b = new Uint8Array(NAT_PMP.PUBLIC_ADDRESS_RESPONSE_LEN);
    b.set(header(NAT_PMP.RESPONSE_BIT | NAT_PMP.OP_PUBLIC_ADDRESS, res));
    b.set(ip, 8);
    return b;
  }
  const op = NAT_PMP.RESPONSE_BIT | mapOp(res.protocol);
  if (res.internalPort === undefined && res.externalPort === undefined && res.lifetime === undefined)
    return header(op, res);
  const b = new Uint8Array(NAT_PMP.MAP_RESPONSE_LEN);
  b.set(header(op, res));
  u16('internalPort', res.internalPort ?? 0);
  u16('externalPort', res.externalPort ?? 0);
  u32('lifetime', res.lifetime ?? 0);
  writeU16(b, 8, res.internalPort ?? 0);
  writeU16(b, 10, res.externalPort ?? 0);
  writeU32(b, 12, res.lifetime ?? 0);
  return b;
}

function header(op: number, res: { resultCode: number; epoch: number }): Uint8Array {
  const b = new Uint8Array(NAT_PMP.RESPONSE_HEADER_LEN);
  b[0] = NAT_PMP.VERSION;
  b[1] = op;
  writeU16(b, 2, res.resultCode);
  writeU32(b, 4, res.epoch);
  return b;
}

/** Decodes a gateway's response. Throws DecodeError for anything that is not a NAT-PMP response. */
export function decodeNatPmpResponse(b: Uint8Array): NatPmpResponse {
  if (b.length < NAT_PMP.RESPONSE_HEADER_LEN)
    throw new DecodeError('nat-pmp/response', `need ${NAT_PMP.RESPONSE_HEADER_LEN} bytes, got ${b.length}`, 0);
  if (b[0] !== NAT_PMP.VERSION) throw new DecodeError('nat-pmp/response', `version ${b[0]}`, 0);
  const op = b[1]!;
  if ((op & NAT_PMP.RESPONSE_BIT) === 0) throw new DecodeError('nat-pmp/response', 'a request, not a response', 1);
  const resultCode = readU16(b, 2);
  const epoch = readU32(b, 4);
  const full = resultCode === NatPmpResult.SUCCESS;
  switch (op & 0x7f) {
    case NAT_PMP.OP_PUBLIC_ADDRESS: {
      if (b.length < NAT_PMP.PUBLIC_ADDRESS_RESPONSE_LEN) {
        if (full) throw new DecodeError('nat-pmp/response/public-address', 'success without an address', b.length);
        return { op: 'public-address', resultCode, epoch, publicIp: undefined };
      }
      return { op: 'public-address', resultCode, epoch, publicIp: `${b[8]}.${b[9]}.${b[10]}.${b[11]}` };
    }
    case NAT_PMP.OP_MAP_UDP:
    case NAT_PMP.OP_MAP_TCP: {
      const protocol: NatPmpTransport = (op & 0x7f) === NAT_PMP.OP_MAP_UDP ? 'udp' : 'tcp';
      if (b.length < NAT_PMP.MAP_RESPONSE_LEN) {
        if (full) throw new DecodeError('nat-pmp/response/map', 'success without a mapping', b.length);
        const none = undefined;
        return { op: 'map', protocol, resultCode, epoch, internalPort: none, externalPort: none, lifetime: none };
      }
      return {
        op: 'map',
        protocol,
        resultCode,
        epoch,
        internalPort: readU16(b, 8),
        externalPort: readU16(b, 10),
        lifetime: readU32(b, 12),
      };
    }
    default:
      throw new DecodeError('nat-pmp/response', `unknown opcode ${op}`, 1);
  }
}

/**
 * True when `b` looks like a NAT-PMP response (version 0, response bit, a known opcode, long enough to decode).
 * Never throws, for any input.
 */
export function isNatPmpResponse(b: unknown): boolean {
  if (!(b instanceof Uint8Array) || b.length < NAT_PMP.RESPONSE_HEADER_LEN || b[0] !== NAT_PMP.VERSION) return false;
  const op = b[1]!;
  if ((op & NAT_PMP.RESPONSE_BIT) === 0) return false;
  const base = op & 0x7f;
  const success = b[2] === 0 && b[3] === 0;
  if (base === NAT_PMP.OP_PUBLIC_ADDRESS) return !success || b.length >= NAT_PMP.PUBLIC_ADDRESS_RESPONSE_LEN;
  if (base === NAT_PMP.OP_MAP_UDP || base === NAT_PMP.OP_MAP_TCP)
    return !success || b.length >= NAT_PMP.MAP_RESPONSE_LEN;
  return false;
}

/** The RFC name of a NAT-PMP result code, for messages and status ("NOT_AUTHORIZED", "RESULT_9"). */
export function natPmpResultName(code: number): string {
  for (const [k, v] of Object.entries(NatPmpResult)) if (v === code) return k;
  return `RESULT_${code}`;
}
