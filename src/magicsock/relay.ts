/**
 * The relay transport contract the virtual socket uses (DESIGN.md: DERP is the second transport). The DERP
 * adapter (derp-transport.ts) implements it over DerpClient; tests may implement it in memory.
 */
import type { PublicKey } from '../key/keys.js';

export interface RelayPacketHandler {
  (src: PublicKey, packet: Uint8Array, region: number): void;
}

export interface RelayTransport {
  /** Our home region, once chosen. */
  homeRegion(): number | undefined;
  /** True when a packet sent now to `region` (or the home region) has a connection to go out on. */
  canSend(region: number | undefined): boolean;
  /** Sends to `dst` via `region` (the home region when undefined). False when dropped; never throws. */
  send(region: number | undefined, dst: PublicKey, packet: Uint8Array): boolean;
  /** Starts delivering received packets. Called once. */
  onPacket(handler: RelayPacketHandler): void;
  /** Called when relay connectivity changes (a connection came up or went down). */
  onChange(handler: () => void): void;
  /** Status for MagicSocket.status(). */
  status(): unknown;
  close(): void | Promise<void>;
}
