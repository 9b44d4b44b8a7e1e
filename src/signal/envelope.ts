/**
 * The signal envelope — how a disco message travels over a signalling channel that cannot authenticate anyone
 * (a WebSocket relay, a DHT, copy-paste) or over DERP before the peer knows our disco key. meshsock extension, not
 * part of Tailscale's protocol: sealed with the NODE keys, it proves the sender holds its node private key, and so
 * binds the disco key inside to that node key (DESIGN.md, "The virtual socket's contract"). A channel in the middle
 * can neither read nor forge it; replaying one only repeats a CallMeMaybe.
 *
 *   offset  len    field
 *   0       6      magic "MS📡" = 4d 53 f0 9f 93 a1
 *   6       32     sender's node public key
 *   38      24     nonce
 *   62      16+N   NaCl box (sender node key → receiver node key) of:
 *                    senderDiscoKey[32] knownReceiverDiscoKey[32] (zeros if unknown) discoMessage[N-64]
 *
 * `knownReceiverDiscoKey` tells the receiver whether the sender already knows its current disco key; when it does
 * not, the receiver answers with its own CallMeMaybe at once (first contact, or after a restart).
 */
import { DecodeError } from '../errors.js';
import { bytesEqual } from '../internal/bytes.js';
import { systemRandom, type RandomSource } from '../internal/clock.js';
import { decodeDiscoMessage, encodeDiscoMessage, type DiscoMessage } from '../disco/message.js';
import type { SharedKey } from '../key/box.js';

export const SIGNAL_MAGIC = new Uint8Array([0x4d, 0x53, 0xf0, 0x9f, 0x93, 0xa1]);
const MAGIC_LEN = 6;
const KEY = 32;
const NONCE = 24;
export const SIGNAL_HEADER_LEN = MAGIC_LEN + KEY + NONCE;
const ZERO_KEY = new Uint8Array(KEY);

/** Cheap test for the envelope magic; never throws. */
export function isSignalEnvelope(b: Uint8Array): boolean {
  return (
    b.length >= SIGNAL_HEADER_LEN + 16 &&
    b[0] === 0x4d &&
    b[1] === 0x53 &&
    b[2] === 0xf0 &&
    b[3] === 0x9f &&
    b[4] === 0x93 &&
    b[5] === 0xa1
  );
}

/** The sender's node key bytes (a view), or undefined when `b` is not an envelope. Never throws. */
export function signalSender(b: Uint8Array): Uint8Array | undefined {
  return isSignalEnvelope(b) ? b.subarray(MAGIC_LEN, MAGIC_LEN + KEY) : undefined;
}

export interface SignalContent {
  readonly senderDisco: Uint8Array;
  /** The receiver's disco key as the sender knows it, or undefined when the sender does not know it. */
  readonly knownReceiverDisco: Uint8Array | undefined;
  readonly message: DiscoMessage;
}

/** Seals a disco message with the node-key shared key between sender and receiver. */
export function sealSignal(
  senderNode: Uint8Array,
  nodeShared: SharedKey,
  content: SignalContent,
  rng: RandomSource = systemRandom,
): Uint8Array {
  const inner = encodeDiscoMessage(content.message);
  const plain = new Uint8Array(2 * KEY + inner.length);
  plain.set(content.senderDisco, 0);
  plain.set(content.knownReceiverDisco ?? ZERO_KEY, KEY);
  plain.set(inner, 2 * KEY);
  const nonce = rng(NONCE);
  const sealed = nodeShared.seal(nonce, plain);
  const out = new Uint8Array(SIGNAL_HEADER_LEN + sealed.length);
  out.set(SIGNAL_MAGIC, 0);
  out.set(senderNode, MAGIC_LEN);
  out.set(nonce, MAGIC_LEN + KEY);
  out.set(sealed, SIGNAL_HEADER_LEN);
  return out;
}

/**
 * Opens an envelope with the node-key shared key for its sender. Returns undefined when the box does not open;
 * throws DecodeError when the bytes are not an envelope or the content is malformed.
 */
export function openSignal(b: Uint8Array, nodeShared: SharedKey): SignalContent | undefined {
  if (!isSignalEnvelope(b)) throw new DecodeError('signal/envelope', 'not a signal envelope', 0);
  const plain = nodeShared.tryOpen(b.subarray(MAGIC_LEN + KEY, SIGNAL_HEADER_LEN), b.subarray(SIGNAL_HEADER_LEN));
  if (!plain) return undefined;
  if (plain.length < 2 * KEY + 2)
    throw new DecodeError('signal/envelope', 'content shorter than two keys and a header', SIGNAL_HEADER_LEN);
  const known = plain.slice(KEY, 2 * KEY);
  return {
    senderDisco: plain.slice(0, KEY),
    knownReceiverDisco: bytesEqual(known, ZERO_KEY) ? undefined : known,
    message: decodeDiscoMessage(plain.subarray(2 * KEY)),
  };
}
