/**
 * The Signaller contract: how MagicSocket hands a sealed coordination message (a CallMeMaybe carrying our
 * endpoints and disco key) to a peer it knows only by public key, and how it receives the peer's.
 *
 * Any channel works — a WebSocket relay, HTTP polling, a DHT, a chat message, copy-paste — because messages are
 * sealed with the node keys (envelope.ts): the channel can neither read nor forge them, so it need not be trusted,
 * only (mostly) delivered. Delivery is best effort, like a datagram: MagicSocket resends until the peer answers.
 *
 * Implementing one:
 * ```ts
 * const signaller: Signaller = {
 *   send(to, message) { myChannel.publish(to.toString(), message) },         // bytes, ~200 B, opaque
 *   listen(self, deliver) {                                                  // called once by MagicSocket
 *     const sub = myChannel.subscribe(self.toString(), (msg) => deliver(msg));
 *     return () => sub.unsubscribe();
 *   },
 * };
 * ```
 * `deliver` never throws and drops (and counts) anything that is not a valid envelope for this socket, so a
 * channel may pass through whatever it receives.
 */
import type { PublicKey } from '../key/keys.js';

export interface Signaller {
  /** Delivers `message` to the peer whose node key is `to`. May be async; failures are counted, then retried. */
  send(to: PublicKey, message: Uint8Array): void | Promise<void>;
  /**
   * Starts receiving messages addressed to `self` and hands each to `deliver`. Returns a function that stops
   * receiving. MagicSocket calls this once, at creation, and the returned function at close.
   */
  listen(self: PublicKey, deliver: (message: Uint8Array) => void): () => void;
}
