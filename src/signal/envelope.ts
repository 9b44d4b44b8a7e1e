/**
 * The signal envelope — how a disco message travels over a signalling channel that cannot authenticate anyone
 * (a WebSocket relay, a DHT, copy-paste) or over DERP before the peer knows our disco key. meshsock extension, not
 * part of Tailscale's protocol: sealed with a key derived from the NODE keys for this purpose alone, it proves the
 * sender holds its node private key, and so binds the disco key inside to that node key (DESIGN.md, "The virtual
 * socket's contract"). A channel in the middle can neither read nor forge it; replaying one only repeats a
 * CallMeMaybe.
 *
 *   offset  len    field
 *   0       6      magic "MS📡" = 4d 53 f0 9f 93 a1
 *   6       32     sender's node public key
 *   38      24     nonce
 *   62      16+N   XSalsa20-Poly1305 under the envelope key (below) of:
 *                    senderNodeKey[32] senderDiscoKey[32] knownReceiverDiscoKey[32] (zeros if unknown)
 *                    discoMessage[N-96]
 *
 *   envelope key = HMAC-SHA256(NaCl box key(sender node key, receiver node key), "meshsock v1 signal envelope")
 *                  (src/key/purpose.ts)
 *
 * Context, so that nothing else can pass for an envelope: the key is used for envelopes and nothing else. A box the
 * node key made for any other format — Tailscale's DERP ClientInfo, which is sealed with the plain box key to a key
 * the DERP server chooses, or anything a future format seals — does not open under it. The sender's node key
 * inside the box must equal the one in the header, so an envelope from A to B cannot be turned around and handed
 * to A as one from B (the box key is symmetric).
 *
 * `knownReceiverDiscoKey` tells the receiver whether the sender already knows its current disco key; when it does
 * not, the receiver answers with its own CallMeMaybe at once (first contact, or after a restart).
 */
import { DecodeError } from '../errors.js';
import { bytesEqual } from '../internal/bytes.js';
import { systemRandom, type RandomSource } from '../internal/clock.js';
import { decodeDiscoMessage, encodeDiscoMessage, type DiscoMessage } from '../disco/message.js';
import type { SharedKey } from '../key/box.js';
import { KeyPurpose, purposeKey } from '../key/purpose.js';

export const SIGNAL_MAGIC = new Uint8Array([0x4d, 0x53, 0xf0, 0x9f, 0x93, 0xa1]);
const MAGIC_LEN = 6;
const KEY = 32;
const NONCE = 24;
export const SIGNAL_HEADER_LEN = MAGIC_LEN + KEY + NONCE;
const ZERO_KEY = new Uint8Array(KEY);
/** Plaintext before the disco message: sender node key, sender disco key, known receiver disco key. */
const INNER_KEYS = 3 * KEY;

/** The envelope key for a node-key box key, derived once per box key (a peer's box key lives as long as the peer). */
const envelopeKeys = new WeakMap<SharedKey, SharedKey>();
function envelopeKey(nodeShared: SharedKey): SharedKey {
  let k = envelopeKeys.get(nodeShared);
  if (!k) envelopeKeys.set(nodeShared, (k = purposeKey(nodeShared, KeyPurpose.SIGNAL_ENVELOPE)));
  return k;
}

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

/** Seals a disco message under the envelope key derived from the node-key box key between sender and receiver. */
export function sealSignal(
  senderNode: Uint8Array,
  nodeShared: SharedKey,
  content: SignalContent,
  rng: RandomSource = systemRandom,
): Uint8Array {
  const inner = encodeDiscoMessage(content.message);
  const plain = new Uint8Array(INNER_KEYS + inner.length);
  plain.set(senderNode, 0);
  plain.set(content.senderDisco, KEY);
  plain.set(content.knownReceiverDisco ?? ZERO_KEY, 2 * KEY);
  plain.set(inner, INNER_KEYS);
  const nonce = rng(NONCE);
  const sealed = envelopeKey(nodeShared).seal(nonce, plain);
  const out = new Uint8Array(SIGNAL_HEADER_LEN + sealed.length);
  out.set(SIGNAL_MAGIC, 0);
  out.set(senderNode, MAGIC_LEN);
  out.set(nonce, MAGIC_LEN + KEY);
  out.set(sealed, SIGNAL_HEADER_LEN);
  return out;
}

/**
 * Opens an envelope with the node-key box key for its sender (the envelope key is derived from it here). Returns
 * undefined when the box does not open under the envelope key, or when the sender inside is not the sender in the
 * header (a turned-around envelope); throws DecodeError when the bytes are not an envelope or the content is
 * malformed.
 */
export function openSignal(b: Uint8Array, nodeShared: SharedKey): SignalContent | undefined {
  if (!isSignalEnvelope(b)) throw new DecodeError('signal/envelope', 'not a signal envelope', 0);
  const plain = envelopeKey(nodeShared).tryOpen(
    b.subarray(MAGIC_LEN + KEY, SIGNAL_HEADER_LEN),
    b.subarray(SIGNAL_HEADER_LEN),
  );
  if (!plain) return undefined;
  if (plain.length < INNER_KEYS + 2)
    throw new DecodeError('signal/envelope', 'content shorter than three keys and a header', SIGNAL_HEADER_LEN);
  if (!bytesEqual(plain.subarray(0, KEY), b.subarray(MAGIC_LEN, MAGIC_LEN + KEY))) return undefined;
  const known = plain.slice(2 * KEY, INNER_KEYS);
  return {
    senderDisco: plain.slice(KEY, 2 * KEY),
    knownReceiverDisco: bytesEqual(known, ZERO_KEY) ? undefined : known,
    message: decodeDiscoMessage(plain.subarray(INNER_KEYS)),
  };
}
