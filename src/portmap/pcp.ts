/**
 * PCP (RFC 6887) codec: ANNOUNCE and MAP requests and responses. Pure functions over Uint8Array, big-endian,
 * no Node imports. Requests go to the gateway's UDP port 5351 (shared with NAT-PMP; the first byte, the version,
 * tells them apart: 0 = NAT-PMP, 2 = PCP).
 *
 * Request header (24 bytes, §7.1)                 Response header (24 bytes, §7.2)
 *    0       1       2       3                       0       1       2       3
 *   +-------+-------+-------+-------+               +-------+-------+-------+-------+
 *   | vers=2|R=0|op |   reserved    |               | vers=2|R=1|op | rsvd  | result|
 *   +-------+-------+-------+-------+               +-------+-------+-------+-------+
 *   |  requested lifetime (s)       |               |  lifetime (s)                 |
 *   +-------+-------+-------+-------+               +-------+-------+-------+-------+
 *   |                               |               |  epoch time (s)               |
 *   |  PCP client's IP address      |               +-------+-------+-------+-------+
 *   |  (16 bytes, IPv4 as           |               |                               |
 *   |   ::ffff:a.b.c.d)             |               |  reserved (12 bytes)          |
 *   +-------+-------+-------+-------+               +-------+-------+-------+-------+
 *
 * MAP opcode payload (36 bytes at offset 24, §11.1; the same layout in the request and the response)
 *   +-------+-------+-------+-------+
 *   |  mapping nonce (12 bytes)     |   random per mapping; renewals and the deletion repeat it
 *   +-------+-------+-------+-------+
 *   | proto |     reserved          |   17 = UDP
 *   +-------+-------+-------+-------+
 *   | internal port | external port |   request: suggested; response: assigned
 *   +-------+-------+-------+-------+
 *   |  external IP (16 bytes)       |   request: suggested (::ffff:0.0.0.0 = none); response: assigned
 *   +-------+-------+-------+-------+
 *
 * ANNOUNCE (opcode 0, §14.1) has no payload: the 24-byte header with lifetime 0 is the whole request; servers
 * answer with their epoch, which is what the probe uses. Options after the payload are ignored. A response
 * shorter than 24 bytes, not a multiple of 4 or longer than 1100 bytes is invalid (§8.3). An error response may
 * carry only the header: its `map` is then undefined.
 */
import { DecodeError } from '../errors.js';
import { ipFrom16, ipTo16, parseIPv4, parseIPv6 } from '../internal/addr.js';
import { readU16, readU32, writeU16, writeU32 } from '../internal/bytes.js';
import { PCP, PcpResult } from './constants.js';

/** The MAP payload (request or response). */
export interface PcpMapFields {
  /** 12 bytes. In a decoded message, a view into the input (copy it to keep it past the input's life). */
  readonly nonce: Uint8Array;
  /** IANA protocol number (17 = UDP). */
  readonly protocol: number;
  readonly internalPort: number;
  /** Suggested (request) or assigned (response) external port; 0 = none. */
  readonly externalPort: number;
  /** Suggested (request) or assigned (response) external IP; "0.0.0.0" = none. */
  readonly externalIp: string;
}

/** A decoded PCP request (the server's side; used by test gateways). */
export type PcpRequest =
  | { readonly opcode: 'announce'; readonly lifetime: number; readonly clientIp: string }
  | { readonly opcode: 'map'; readonly lifetime: number; readonly clientIp: string; readonly map: PcpMapFields };

/** A decoded PCP response. */
export interface PcpResponse {
  /** `other` for opcodes we never send (PEER, vendor ones); `code` has the number. */
  readonly opcode: 'announce' | 'map' | 'other';
  readonly code: number;
  readonly resultCode: number;
  /** Seconds: the granted lifetime (success) or how long the error holds (failure). */
  readonly lifetime: number;
  /** Seconds since the server's mapping state was (re)initialised (§8.5). */
  readonly epoch: number;
  /** The MAP payload; undefined for other opcodes and for a header-only error response. */
  readonly map: PcpMapFields | undefined;
}

function u16(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff)
    throw new RangeError(`"${name}" must be an integer 0..65535, got ${v}`);
}

function u32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff)
    throw new RangeError(`"${name}" must be an integer 0..4294967295, got ${v}`);
}

function ip16(name: string, ip: string): Uint8Array {
  if (parseIPv4(ip) === undefined && parseIPv6(ip) === undefined)
    throw new TypeError(`"${name}" must be an IP address, got ${ip}`);
  return ipTo16(ip);
}

function requestHeader(opcode: number, lifetime: number, clientIp: string, len: number): Uint8Array {
  u32('lifetime', lifetime);
  const b = new Uint8Array(len);
  b[0] = PCP.VERSION;
  b[1] = opcode;
  writeU32(b, 4, lifetime);
  b.set(ip16('clientIp', clientIp), 8);
  return b;
}

function writeMap(b: Uint8Array, m: PcpMapFields): void {
  if (!(m.nonce instanceof Uint8Array) || m.nonce.length !== PCP.NONCE_LEN)
    throw new RangeError(`"nonce" must be ${PCP.NONCE_LEN} bytes`);
  if (!Number.isInteger(m.protocol) || m.protocol < 0 || m.protocol > 255)
    throw new RangeError(`"protocol" must be an integer 0..255, got ${m.protocol}`);
  u16('internalPort', m.internalPort);
  u16('externalPort', m.externalPort);
  const o = PCP.HEADER_LEN;
  b.set(m.nonce, o);
  b[o + 12] = m.protocol;
  writeU16(b, o + 16, m.internalPort);
  writeU16(b, o + 18, m.externalPort);
  b.set(ip16('externalIp', m.externalIp), o + 20);
}

function readMap(b: Uint8Array): PcpMapFields {
  const o = PCP.HEADER_LEN;
  return {
    nonce: b.subarray(o, o + PCP.NONCE_LEN),
    protocol: b[o + 12]!,
    internalPort: readU16(b, o + 16),
    externalPort: readU16(b, o + 18),
    externalIp: ipFrom16(b, o + 20),
  };
}

/** The 24-byte ANNOUNCE request (§14.1): header only, lifetime 0. */
export function encodePcpAnnounceRequest(req: { clientIp: string }): Uint8Array {
  return requestHeader(PCP.OP_ANNOUNCE, 0, req.clientIp, PCP.HEADER_LEN);
}

/**
 * The 60-byte MAP request (§11.1). Lifetime 0 deletes the mapping named by nonce + protocol + internal port
 * (§15). Throws RangeError/TypeError for out-of-range arguments.
 */
export function encodePcpMapRequest(req: { lifetime: number; clientIp: string } & PcpMapFields): Uint8Array {
  const b = requestHeader(PCP.OP_MAP, req.lifetime, req.clientIp, PCP.HEADER_LEN + PCP.MAP_PAYLOAD_LEN);
  writeMap(b, req);
  return b;
}

function checkFraming(b: Uint8Array, where: string): void {
  if (b.length < PCP.HEADER_LEN) throw new DecodeError(where, `need ${PCP.HEADER_LEN} bytes, got ${b.length}`, 0);
  if (b.length % 4 !== 0) throw new DecodeError(where, `length ${b.length} is not a multiple of 4`, b.length);
  if (b.length > PCP.MAX_MESSAGE_LEN) throw new DecodeError(where, `longer than ${PCP.MAX_MESSAGE_LEN} bytes`, 0);
  if (b[0] !== PCP.VERSION) throw new DecodeError(where, `version ${b[0]}`, 0);
}

/** Decodes a request (the server's side; used by test gateways). Throws DecodeError. */
export function decodePcpRequest(b: Uint8Array): PcpRequest {
  checkFraming(b, 'pcp/request');
  if ((b[1]! & PCP.RESPONSE_BIT) !== 0) throw new DecodeError('pcp/request', 'a response, not a request', 1);
  const lifetime = readU32(b, 4);
  const clientIp = ipFrom16(b, 8);
  const op = b[1]! & 0x7f;
  if (op === PCP.OP_ANNOUNCE) return { opcode: 'announce', lifetime, clientIp };
  if (op !== PCP.OP_MAP) throw new DecodeError('pcp/request', `unsupported opcode ${op}`, 1);
  if (b.length < PCP.HEADER_LEN + PCP.MAP_PAYLOAD_LEN)
    throw new DecodeError('pcp/request/map', 'MAP payload missing', b.length);
  return { opcode: 'map', lifetime, clientIp, map: readMap(b) };
}

/**
 * Encodes a response (the server's side; used by test gateways and for round-trip tests). A MAP response whose
 * `map` is undefined is written header-only.
 */
export function encodePcpResponse(res: Omit<PcpResponse, 'opcode'> & { opcode: 'announce' | 'map' }): Uint8Array {
  u32('lifetime', res.lifetime);
  u32('epoch', res.epoch);
  if (!Number.isInteger(res.resultCode) || res.resultCode < 0 || res.resultCode > 255)
    throw new RangeError(`"resultCode" must be an integer 0..255, got ${res.resultCode}`);
  const withMap = res.opcode === 'map' && res.map !== undefined;
  const b = new Uint8Array(PCP.HEADER_LEN + (withMap ? PCP.MAP_PAYLOAD_LEN : 0));
  b[0] = PCP.VERSION;
  b[1] = PCP.RESPONSE_BIT | (res.opcode === 'map' ? PCP.OP_MAP : PCP.OP_ANNOUNCE);
  b[3] = res.resultCode;
  writeU32(b, 4, res.lifetime);
  writeU32(b, 8, res.epoch);
  if (withMap) writeMap(b, res.map!);
  return b;
}

/** Decodes a server's response. Throws DecodeError for anything that is not a valid PCP response (§8.3). */
export function decodePcpResponse(b: Uint8Array): PcpResponse {
  checkFraming(b, 'pcp/response');
  if ((b[1]! & PCP.RESPONSE_BIT) === 0) throw new DecodeError('pcp/response', 'a request, not a response', 1);
  const code = b[1]! & 0x7f;
  const resultCode = b[3]!;
  const lifetime = readU32(b, 4);
  const epoch = readU32(b, 8);
  if (code === PCP.OP_ANNOUNCE) return { opcode: 'announce', code, resultCode, lifetime, epoch, map: undefined };
  if (code !== PCP.OP_MAP) return { opcode: 'other', code, resultCode, lifetime, epoch, map: undefined };
  if (b.length < PCP.HEADER_LEN + PCP.MAP_PAYLOAD_LEN) {
    if (resultCode === PcpResult.SUCCESS) throw new DecodeError('pcp/response/map', 'success without a payload', 24);
    return { opcode: 'map', code, resultCode, lifetime, epoch, map: undefined };
  }
  return { opcode: 'map', code, resultCode, lifetime, epoch, map: readMap(b) };
}

/** True when `b` is a PCP response `decodePcpResponse` accepts. Never throws, for any input. */
export function isPcpResponse(b: unknown): boolean {
  if (!(b instanceof Uint8Array)) return false;
  if (b.length < PCP.HEADER_LEN || b.length % 4 !== 0 || b.length > PCP.MAX_MESSAGE_LEN) return false;
  if (b[0] !== PCP.VERSION || (b[1]! & PCP.RESPONSE_BIT) === 0) return false;
  if ((b[1]! & 0x7f) === PCP.OP_MAP && b[3] === PcpResult.SUCCESS)
    return b.length >= PCP.HEADER_LEN + PCP.MAP_PAYLOAD_LEN;
  return true;
}

/** The RFC name of a PCP result code ("NOT_AUTHORIZED", "ADDRESS_MISMATCH", "RESULT_99"). */
export function pcpResultName(code: number): string {
  for (const [k, v] of Object.entries(PcpResult)) if (v === code) return k;
  return `RESULT_${code}`;
}
