/**
 * Mesh links (tailscale-protocols.md §2.5): servers sharing a mesh key form one region. Each server dials every
 * other one as a DERP client holding the mesh key (a `DerpConn` under the server's own node key), sends WatchConns,
 * and from the PeerPresent / PeerGone stream keeps a forwarder per remote client in the relay. Packets for those
 * clients then leave as ForwardPacket on this link (one hop). A broken link removes its forwarders and is redialled
 * every `retryMs` (Tailscale: 5 s). PeerPresent entries flagged as mesh peers are the other servers' own links and
 * get no forwarder.
 */
import type { ConnectionOptions } from 'node:tls';
import { channels, publish } from '../../internal/diagnostics.js';
import type { Clock } from '../../internal/clock.js';
import { PublicKey, type PrivateKey } from '../../key/keys.js';
import { DerpConn } from '../conn.js';
import { PeerPresentFlags } from '../constants.js';
import type { Frame } from '../frame.js';
import type { Forwarder, Relay } from './relay.js';

export interface MeshLinkOptions {
  url: string;
  privateKey: PrivateKey;
  meshKey: string;
  retryMs: number;
  clock: Clock;
  tls?: ConnectionOptions | undefined;
}

/** One outgoing watch connection to another node of the region, also used as the forwarder to it. */
export class MeshLink implements Forwarder {
  readonly name: string;
  private conn: DerpConn | undefined;
  private stopped = false;
  private cancelRetry: (() => void) | undefined;
  private readonly abort = new AbortController();

  constructor(
    private readonly relay: Relay,
    private readonly opts: MeshLinkOptions,
  ) {
    this.name = opts.url;
  }

  /** True while the watch connection is up. */
  get connected(): boolean {
    return this.conn !== undefined && !this.conn.closed;
  }

  start(): void {
    void this.dial();
  }

  private async dial(): Promise<void> {
    if (this.stopped) return;
    let conn: DerpConn;
    try {
      conn = await DerpConn.connect({
        url: this.opts.url,
        privateKey: this.opts.privateKey,
        meshKey: this.opts.meshKey,
        signal: this.abort.signal,
        clock: this.opts.clock,
        ...(this.opts.tls ? { tls: this.opts.tls } : {}),
      });
    } catch (err) {
      if (this.stopped) return;
      this.relay.counters.meshConnectFailures++;
      publish(channels.derpServer, () => ({ event: 'mesh-connect-failed', url: this.name, error: err }));
      this.scheduleRetry();
      return;
    }
    if (this.stopped) {
      conn.close();
      return;
    }
    if (conn.serverKey.equals(this.opts.privateKey.publicKey)) {
      // meshWith listed this server itself: nothing to watch.
      conn.close();
      publish(channels.derpServer, () => ({ event: 'mesh-self', url: this.name }));
      return;
    }
    this.conn = conn;
    this.relay.counters.meshConnects++;
    publish(channels.derpServer, () => ({ event: 'mesh-connected', url: this.name, peer: conn.serverKey.toString() }));
    conn.on('frame', (f: Frame) => this.onFrame(f));
    conn.on('close', () => {
      this.conn = undefined;
      this.relay.counters.meshDisconnects++;
      this.relay.removeLink(this);
      publish(channels.derpServer, () => ({ event: 'mesh-disconnected', url: this.name }));
      this.scheduleRetry();
    });
    conn.watchConns();
  }

  private onFrame(f: Frame): void {
    if (f.type === 'peerPresent') {
      if ((f.flags & PeerPresentFlags.MESH_PEER) !== 0) return;
      this.relay.addForwarder(new PublicKey(f.key), this);
    } else if (f.type === 'peerGone') {
      this.relay.removeForwarder(Buffer.from(f.key.buffer, f.key.byteOffset, f.key.byteLength).toString('hex'), this);
    }
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    this.cancelRetry?.();
    this.cancelRetry = this.opts.clock.setTimer(() => {
      this.cancelRetry = undefined;
      void this.dial();
    }, this.opts.retryMs);
  }

  forwardPacket(src: PublicKey, dst: PublicKey, packet: Uint8Array): boolean {
    const c = this.conn;
    return c !== undefined && c.forwardPacket(src, dst, packet);
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    this.cancelRetry?.();
    this.cancelRetry = undefined;
    const c = this.conn;
    this.conn = undefined;
    c?.close();
    this.relay.removeLink(this);
  }
}
