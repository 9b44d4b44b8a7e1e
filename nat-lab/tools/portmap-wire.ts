/**
 * NAT-PMP (RFC 6886) and PCP (RFC 6887) MAP messages, just enough for nat-lab's probe and stand-in peer.
 * Independent of src/portmap so the lab can judge a router while the library's client is being written.
 *
 * NAT-PMP UDP mapping request (12 bytes)        NAT-PMP mapping response (16 bytes)
 *   0 version=0 | 1 opcode=1 (UDP)                0 version | 1 opcode=129 | 2-3 result
 *   2-3 reserved                                  4-7 seconds since start of epoch
 *   4-5 internal port | 6-7 suggested ext port    8-9 internal port | 10-11 mapped external port
 *   8-11 requested lifetime (s)                   12-15 lifetime (s)
 *
 * NAT-PMP external address request: 0 version=0 | 1 opcode=0; response (12 bytes): 0 | 128 | result(2) |
 * epoch(4) | IPv4(4).
 *
 * PCP MAP request (60 bytes)                    PCP MAP response (60 bytes)
 *   0 version=2 | 1 R=0,opcode=1 | 2-3 reserved   0 version | 1 R=1,opcode=0x81 | 2 reserved | 3 result
 *   4-7 requested lifetime                        4-7 lifetime | 8-11 epoch | 12-23 reserved
 *   8-23 client IP (IPv4-mapped IPv6)             24-35 nonce | 36 protocol | 37-39 reserved
 *   24-35 nonce | 36 protocol=17 | 37-39 reserved 40-41 internal port | 42-43 assigned external port
 *   40-41 internal port | 42-43 suggested port    44-59 assigned external IP (IPv4-mapped)
 *   44-59 suggested external IP (::ffff:0.0.0.0)
 */

/** Port-mapping constants with their reasons. */
export const PORTMAP = {
  /** RFC 6886 §1.1 / RFC 6887 §19.1: both protocols listen on UDP 5351 at the gateway. */
  serverPort: 5351,
  /** RFC 6886 §3.3: opcode 1 maps a UDP port; responses add 128. */
  natpmpOpMapUdp: 1,
  natpmpOpExternal: 0,
  /** RFC 6887 §7.1: PCP version 2, opcode MAP = 1, response bit 0x80. */
  pcpVersion: 2,
  pcpOpMap: 1,
  /** IANA protocol number for UDP. */
  protoUdp: 17,
} as const;

export interface PortmapResult {
  result: number;
  internalPort: number;
  externalPort: number;
  lifetime: number;
  externalIp?: string;
}

export function natpmpMapRequest(internalPort: number, suggestedPort: number, lifetime: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  b[1] = PORTMAP.natpmpOpMapUdp;
  v.setUint16(4, internalPort);
  v.setUint16(6, suggestedPort);
  v.setUint32(8, lifetime);
  return b;
}

export function natpmpExternalRequest(): Uint8Array {
  return new Uint8Array([0, PORTMAP.natpmpOpExternal]);
}

/** Parses a NAT-PMP UDP map response; undefined when it is not one. Never throws. */
export function parseNatpmpMap(b: Uint8Array): PortmapResult | undefined {
  if (b.length < 16 || b[0] !== 0 || b[1] !== 128 + PORTMAP.natpmpOpMapUdp) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    result: v.getUint16(2),
    internalPort: v.getUint16(8),
    externalPort: v.getUint16(10),
    lifetime: v.getUint32(12),
  };
}

/** Parses a NAT-PMP external-address response; undefined when it is not one. Never throws. */
export function parseNatpmpExternal(b: Uint8Array): { result: number; ip: string } | undefined {
  if (b.length < 12 || b[0] !== 0 || b[1] !== 128 + PORTMAP.natpmpOpExternal) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { result: v.getUint16(2), ip: `${b[8]}.${b[9]}.${b[10]}.${b[11]}` };
}

/** A PCP MAP request for UDP `internalPort` from `clientIp` (IPv4), with a 12-byte `nonce`. */
export function pcpMapRequest(
  clientIp: string,
  nonce: Uint8Array,
  internalPort: number,
  suggestedPort: number,
  lifetime: number,
): Uint8Array {
  const b = new Uint8Array(60);
  const v = new DataView(b.buffer);
  b[0] = PORTMAP.pcpVersion;
  b[1] = PORTMAP.pcpOpMap;
  v.setUint32(4, lifetime);
  b.set(mapped4(clientIp), 8);
  b.set(nonce.subarray(0, 12), 24);
  b[36] = PORTMAP.protoUdp;
  v.setUint16(40, internalPort);
  v.setUint16(42, suggestedPort);
  b.set(mapped4('0.0.0.0'), 44);
  return b;
}

/** Parses a PCP MAP response; undefined when it is not one. Never throws. */
export function parsePcpMap(b: Uint8Array): PortmapResult | undefined {
  if (b.length < 60 || b[0] !== PORTMAP.pcpVersion || b[1] !== (0x80 | PORTMAP.pcpOpMap)) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    result: b[3]!,
    lifetime: v.getUint32(4),
    internalPort: v.getUint16(40),
    externalPort: v.getUint16(42),
    externalIp: `${b[56]}.${b[57]}.${b[58]}.${b[59]}`,
  };
}

function mapped4(ip: string): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  ip.split('.').forEach((o, i) => (out[12 + i] = Number(o) & 255));
  return out;
}
