/**
 * An in-process Signaller: every socket that gets its signaller from the same hub can reach the others. For tests,
 * examples, and applications that run several peers in one process. Delivery is asynchronous (next macrotask), as
 * on a real channel, so a sender never re-enters its own receive path.
 */
import type { PublicKey } from '../key/keys.js';
import type { Signaller } from './signaller.js';

export class MemorySignalHub {
  private readonly inboxes = new Map<string, (message: Uint8Array) => void>();
  /** Messages addressed to a key nobody listens on. */
  undelivered = 0;
  delivered = 0;

  /** A Signaller attached to this hub. */
  signaller(): Signaller {
    return {
      send: (to: PublicKey, message: Uint8Array) => {
        const copy = Uint8Array.from(message);
        setImmediate(() => {
          const inbox = this.inboxes.get(to.hex);
          if (!inbox) {
            this.undelivered++;
            return;
          }
          this.delivered++;
          inbox(copy);
        });
      },
      listen: (self: PublicKey, deliver: (message: Uint8Array) => void) => {
        this.inboxes.set(self.hex, deliver);
        return () => {
          if (this.inboxes.get(self.hex) === deliver) this.inboxes.delete(self.hex);
        };
      },
    };
  }
}
