/**
 * One key per purpose (DESIGN.md decision 8: no key is ever used to seal or sign bytes that someone else chose;
 * each use of a key has its own fixed format and context).
 *
 * The NaCl box key between two node keys (`SharedKey.compute(mine, theirs)`) is what Tailscale's wire formats use
 * as is (DERP ClientInfo/ServerInfo), so meshsock's own formats never use it directly: each derives its own key
 *
 *   purposeKey = HMAC-SHA256(key = boxKey, message = context label)        32 bytes, then used as the format needs
 *
 * with a context label from the table below. A box or MAC made under one purpose key cannot be opened or verified
 * under another, nor under the raw box key, so bytes one protocol produces (even bytes a relay chose) can never be
 * taken for another protocol's message. Labels are ASCII, fixed, versioned and never reused.
 */
import { createHmac } from 'node:crypto';
import { SharedKey } from './box.js';

/** Every context a node-key-derived key is made for. Adding a format means adding a label here, never reusing one. */
export const KeyPurpose = {
  /** The signal envelope (src/signal/envelope.ts): a disco key bound to a node key, carried by any channel. */
  SIGNAL_ENVELOPE: 'meshsock v1 signal envelope',
  /** The answer to a SignalRelayServer's registration challenge (src/signal/websocket.ts): a MAC, never a box. */
  SIGNAL_RELAY_REGISTRATION: 'meshsock v1 signal relay registration',
} as const;
export type KeyPurpose = (typeof KeyPurpose)[keyof typeof KeyPurpose];

/** HMAC-SHA256 of `parts` (concatenated) under `key`. */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  const d = h.digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

const LABELS = new Map<string, Uint8Array>(
  Object.values(KeyPurpose).map((l) => [l, new TextEncoder().encode(l)] as const),
);

/** The key for `purpose` derived from a node-key box key, as a SharedKey (secretbox) usable with `seal`/`open`. */
export function purposeKey(boxKey: SharedKey, purpose: KeyPurpose): SharedKey {
  return new SharedKey(hmacSha256(boxKey.bytes, LABELS.get(purpose)!));
}
