/**
 * The sealed disco envelope — wire-compatible with Tailscale disco (tailscale-protocols.md §1.1). The same bytes
 * travel over UDP and inside DERP packets.
 *
 *   offset  len   field
 *   0       6     magic "TS💬" = 54 53 f0 9f 92 ac
 *   6       32    sender's disco public key (X25519)
 *   38      24    nonce (random per message)
 *   62      16+N  NaCl box of the inner message (message.ts): Poly1305 tag, then N ciphertext bytes
 *
 * Overhead: 78 bytes + the 2-byte inner header. Receivers look up the sender key and drop the message when the key
 * is unknown or the box does not open.
 */
import { DecodeError } from '../errors.js';
import { bytesEqual } from '../internal/bytes.js';
import { systemRandom, type RandomSource } from '../internal/clock.js';
import type { SharedKey } from '../key/box.js';
import { decodeDiscoMessage, encodeDiscoMessage, type DiscoMessage } from './message.js';

export const DISCO_MAGIC = new Uint8Array([0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac]);

export const ENVELOPE = {
  MAGIC_LEN: 6,
  KEY_LEN: 32,
  NONCE_LEN: 24,
  TAG_LEN: 16,
  /** magic + key + nonce: the smallest prefix that can be a disco packet. */
  HEADER_LEN: 6 + 32 + 24,
  /** Bytes added around an inner message. */
  OVERHEAD: 6 + 32 + 24 + 16,
} as const;

/**
 * Cheap demultiplexing test: true when `b` is long enough for the header and starts with the disco magic.
 * Never throws.
 */
export function isDisco(b: Uint8Array): boolean {
  return (
    b.length >= ENVELOPE.HEADER_LEN &&
    b[0] === 0x54 &&
    b[1] === 0x53 &&
    b[2] === 0xf0 &&
    b[3] === 0x9f &&
    b[4] === 0x92 &&
    b[5] === 0xac
  );
}

/** The sender's disco key bytes (a view into `b`), or undefined if `b` is not a disco packet. Never throws. */
export function discoSender(b: Uint8Array): Uint8Array | undefined {
  return isDisco(b) ? b.subarray(ENVELOPE.MAGIC_LEN, ENVELOPE.MAGIC_LEN + ENVELOPE.KEY_LEN) : undefined;
}

/** Seals an inner message from `senderKey` with the precomputed shared key. */
export function sealDisco(
  senderKey: Uint8Array,
  shared: SharedKey,
  msg: DiscoMessage,
  rng: RandomSource = systemRandom,
): Uint8Array {
  const nonce = rng(ENVELOPE.NONCE_LEN);
  const sealed = shared.seal(nonce, encodeDiscoMessage(msg));
  const out = new Uint8Array(ENVELOPE.HEADER_LEN + sealed.length);
  out.set(DISCO_MAGIC, 0);
  out.set(senderKey, ENVELOPE.MAGIC_LEN);
  out.set(nonce, ENVELOPE.MAGIC_LEN + ENVELOPE.KEY_LEN);
  out.set(sealed, ENVELOPE.HEADER_LEN);
  return out;
}

/**
 * Opens a disco packet with the shared key for its sender. Returns undefined when the box does not open (forged,
 * corrupted, or sealed for someone else). Throws DecodeError when `b` is not a disco packet or the opened message
 * is malformed.
 */
export function openDisco(b: Uint8Array, shared: SharedKey): DiscoMessage | undefined {
  if (!isDisco(b)) throw new DecodeError('disco/envelope', 'not a disco packet', 0);
  const nonce = b.subarray(ENVELOPE.MAGIC_LEN + ENVELOPE.KEY_LEN, ENVELOPE.HEADER_LEN);
  const plain = shared.tryOpen(nonce, b.subarray(ENVELOPE.HEADER_LEN));
  return plain && decodeDiscoMessage(plain);
}

/** True when the disco packet `b` was sent by `key`. Never throws. */
export function isDiscoFrom(b: Uint8Array, key: Uint8Array): boolean {
  const s = discoSender(b);
  return s !== undefined && bytesEqual(s, key);
}
