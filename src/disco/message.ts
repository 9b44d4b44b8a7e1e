/**
 * Disco messages — wire-compatible with Tailscale disco version 0 (tailscale-protocols.md §1.2).
 *
 * Inner payload (the plaintext inside the sealed envelope, see envelope.ts):
 *
 *   type[1] version[1] payload…
 *
 *   0x01 Ping         txId[12] nodeKey[32] (optional) padding (zeros; its length is the padding count)
 *   0x02 Pong         txId[12] src ip[16] (IPv4 as v4-mapped IPv6) src port[2, BE]
 *   0x03 CallMeMaybe  N × ( ip[16] port[2] ), N ≥ 0
 *
 * Parsing is lax for future versions: trailing bytes are ignored, and a CallMeMaybe whose length is not a multiple
 * of 18 or whose version is not 0 parses as an empty list, as Tailscale does. Unknown message types and payloads
 * too short to be safe raise DecodeError.
 */
import { DecodeError } from '../errors.js';
import { ADDR_PORT_LEN, decodeAddrPort, encodeAddrPortInto, type AddrPort } from '../internal/addr.js';

export const DiscoType = {
  PING: 0x01,
  PONG: 0x02,
  CALL_ME_MAYBE: 0x03,
} as const;

export const DISCO = {
  /** The only message version in use; parsers accept any and ignore extra bytes. */
  VERSION: 0,
  /** type + version. */
  HEADER_LEN: 2,
  /** Transaction id, the same size as a STUN transaction id. */
  TXID_LEN: 12,
  /** Node public key carried in Ping since Tailscale ~1.16. */
  NODE_KEY_LEN: 32,
  /** One endpoint: 16-byte IP + 2-byte port. */
  ENDPOINT_LEN: ADDR_PORT_LEN,
} as const;

export interface Ping {
  readonly type: 'ping';
  readonly txId: Uint8Array;
  /** The sender's node key, or undefined when an old client omitted it. */
  readonly nodeKey: Uint8Array | undefined;
  /** Number of trailing zero bytes (path-MTU probing). */
  readonly padding: number;
}

export interface Pong {
  readonly type: 'pong';
  readonly txId: Uint8Array;
  /** The source ip:port the ping's receiver observed. */
  readonly src: AddrPort;
}

export interface CallMeMaybe {
  readonly type: 'callMeMaybe';
  readonly endpoints: readonly AddrPort[];
}

export type DiscoMessage = Ping | Pong | CallMeMaybe;

export function encodedDiscoLength(m: DiscoMessage): number {
  switch (m.type) {
    case 'ping':
      return DISCO.HEADER_LEN + DISCO.TXID_LEN + (m.nodeKey ? DISCO.NODE_KEY_LEN : 0) + m.padding;
    case 'pong':
      return DISCO.HEADER_LEN + DISCO.TXID_LEN + ADDR_PORT_LEN;
    case 'callMeMaybe':
      return DISCO.HEADER_LEN + m.endpoints.length * ADDR_PORT_LEN;
  }
}

/** Encodes the inner message (type, version, payload). Throws RangeError for wrong-sized fields. */
export function encodeDiscoMessage(m: DiscoMessage): Uint8Array {
  const out = new Uint8Array(encodedDiscoLength(m));
  out[1] = DISCO.VERSION;
  let o: number = DISCO.HEADER_LEN;
  switch (m.type) {
    case 'ping':
      out[0] = DiscoType.PING;
      if (m.txId.length !== DISCO.TXID_LEN) throw new RangeError(`"txId" expected 12 bytes, got ${m.txId.length}`);
      out.set(m.txId, o);
      o += DISCO.TXID_LEN;
      if (m.nodeKey) {
        if (m.nodeKey.length !== DISCO.NODE_KEY_LEN) throw new RangeError('"nodeKey" expected 32 bytes');
        out.set(m.nodeKey, o);
      }
      break;
    case 'pong':
      out[0] = DiscoType.PONG;
      if (m.txId.length !== DISCO.TXID_LEN) throw new RangeError(`"txId" expected 12 bytes, got ${m.txId.length}`);
      out.set(m.txId, o);
      encodeAddrPortInto(m.src, out, o + DISCO.TXID_LEN);
      break;
    case 'callMeMaybe':
      out[0] = DiscoType.CALL_ME_MAYBE;
      for (const ep of m.endpoints) o = encodeAddrPortInto(ep, out, o);
      break;
  }
  return out;
}

/** Decodes an inner message. Byte fields are copies (safe to keep). Throws DecodeError. */
export function decodeDiscoMessage(b: Uint8Array): DiscoMessage {
  if (b.length < DISCO.HEADER_LEN) throw new DecodeError('disco/header', 'message shorter than its 2-byte header', 0);
  const type = b[0]!;
  const version = b[1]!;
  const p = b.subarray(DISCO.HEADER_LEN);
  switch (type) {
    case DiscoType.PING: {
      if (p.length < DISCO.TXID_LEN) throw new DecodeError('disco/ping', `payload ${p.length} bytes, need 12`, 2);
      const txId = p.slice(0, DISCO.TXID_LEN);
      const hasKey = p.length >= DISCO.TXID_LEN + DISCO.NODE_KEY_LEN;
      const nodeKey = hasKey ? p.slice(DISCO.TXID_LEN, DISCO.TXID_LEN + DISCO.NODE_KEY_LEN) : undefined;
      const padding = p.length - DISCO.TXID_LEN - (hasKey ? DISCO.NODE_KEY_LEN : 0);
      return { type: 'ping', txId, nodeKey, padding };
    }
    case DiscoType.PONG: {
      if (p.length < DISCO.TXID_LEN + ADDR_PORT_LEN)
        throw new DecodeError('disco/pong', `payload ${p.length} bytes, need 30`, 2);
      return { type: 'pong', txId: p.slice(0, DISCO.TXID_LEN), src: decodeAddrPort(p, DISCO.TXID_LEN, 'disco/pong') };
    }
    case DiscoType.CALL_ME_MAYBE: {
      if (version !== DISCO.VERSION || p.length % ADDR_PORT_LEN !== 0) return { type: 'callMeMaybe', endpoints: [] };
      const endpoints: AddrPort[] = [];
      for (let o = 0; o < p.length; o += ADDR_PORT_LEN) endpoints.push(decodeAddrPort(p, o, 'disco/callMeMaybe'));
      return { type: 'callMeMaybe', endpoints };
    }
    default:
      throw new DecodeError('disco/header', `unknown message type 0x${type.toString(16)}`, 0);
  }
}
