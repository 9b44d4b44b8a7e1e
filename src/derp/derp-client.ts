/**
 * `DerpClient`: the DERP transport of the virtual socket — one `RegionClient` per region in use, a home region
 * kept forever, other regions opened on demand and closed after 60 s without writes, and the reply-route rule
 * (tailscale-protocols.md §2.7; after magicsock's `derp.go`). Routing decisions live in the sans-IO `DerpRoutes`;
 * this driver owns the region clients and one DriverTimer for idle closes.
 *
 *   const derp = new DerpClient({ privateKey, derpMap });
 *   derp.on('packet', (src, packet, regionId) => …);
 *   derp.setHome(900);                            // NotePreferred true to 900, false to every other open region
 *   derp.send(peerHomeRegion, peerKey, bytes);     // false when dropped; never throws
 *
 * A peer's packets are answered on the region they arrived on when the peer's home is not open (reply route), and
 * `regionForPeer(key)` tells the caller where a peer was last heard (for peers whose home it does not know).
 */
import { EventEmitter } from 'node:events';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import { type Clock, DriverTimer, type RandomSource, systemClock } from '../internal/clock.js';
import { channels, Counters, publish } from '../internal/diagnostics.js';
import type { PrivateKey, PublicKey } from '../key/keys.js';
import { DERP } from './constants.js';
import type { DerpMap, DerpRegion } from './derp-map.js';
import { DerpRoutes, type DerpRoutesAction } from './derp-routes.js';
import { RegionClient, type RegionClientOptions, type RegionStatus } from './region-client.js';

export interface DerpClientOptions {
  /** Our node key; DERP servers know us by its public half. */
  privateKey: PrivateKey;
  /** The user's DERP map (required; there is no default). */
  derpMap: DerpMap;
  clock?: Clock;
  rng?: RandomSource;
  /** Non-home regions close after this long without writes (default 60 s). */
  idleCloseMs?: number;
  /** Passed to every RegionClient: backoff, tls, dialNodeTimeoutMs, connectTimeoutMs, connect. */
  region?: Pick<RegionClientOptions, 'backoff' | 'tls' | 'dialNodeTimeoutMs' | 'connectTimeoutMs' | 'connect'>;
  /** Closes the client when it fires. */
  signal?: AbortSignal;
}

/** Events. `packet` bytes are copies the listener may keep. */
export interface DerpClientEvents {
  packet: [src: PublicKey, packet: Uint8Array, regionId: number];
  peerGone: [key: PublicKey, reason: number, regionId: number];
  state: [status: RegionStatus];
}

export type DerpClientCounter =
  'sent' | 'dropNoRoute' | 'dropRegion' | 'dropClosed' | 'regionsOpened' | 'regionsClosedIdle';

/** The DERP transport: home + on-demand regions. */
export class DerpClient extends EventEmitter<DerpClientEvents> {
  readonly counters = new Counters<DerpClientCounter>();
  private map: DerpMap;
  private readonly clock: Clock;
  private readonly opts: DerpClientOptions;
  private readonly routes: DerpRoutes;
  private readonly regions = new Map<number, RegionClient>();
  private readonly timer: DriverTimer;
  private closedFlag = false;

  constructor(opts: DerpClientOptions) {
    super();
    if (!opts?.derpMap || !(opts.derpMap.regions instanceof Map))
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        'DerpClient needs a parsed DERP map (parseDerpMap); there is no default',
      );
    if (!opts.privateKey) throw new TypeError('"privateKey" is required');
    this.opts = opts;
    this.map = opts.derpMap;
    this.clock = opts.clock ?? systemClock;
    this.routes = new DerpRoutes((id) => this.map.regions.has(id), opts.idleCloseMs ?? DERP.INACTIVE_REGION_CLOSE_MS);
    this.timer = new DriverTimer(this.clock, () => this.onTimer());
    if (opts.signal) {
      if (opts.signal.aborted) this.close();
      else opts.signal.addEventListener('abort', () => this.close(), { once: true });
    }
  }

  /** Our node public key (how DERP servers and peers know us). */
  get publicKey(): PublicKey {
    return this.opts.privateKey.publicKey;
  }

  /** The home region (0 when none). */
  get home(): number {
    return this.routes.home;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** The DERP map in use. */
  get derpMap(): DerpMap {
    return this.map;
  }

  /**
   * Makes `regionId` the home: dials it (kept forever) and sends NotePreferred(true) to it and NotePreferred(false)
   * to every other open region. 0 clears the home. Throws BAD_CONFIG for a region not in the map.
   */
  setHome(regionId: number): void {
    if (this.closedFlag) return;
    if (regionId !== 0 && !this.map.regions.has(regionId))
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `DERP map has no region ${regionId}`);
    this.apply(this.routes.setHome(regionId, this.clock.now()));
  }

  /**
   * Sends `packet` to `dst`, whose home region is `regionId` (0 if unknown): through that region if open, else the
   * region `dst` was last heard on if open, else by dialling `regionId`. Returns false when the packet was dropped
   * (no route, region not connected, queue full, rate limited, closed); never throws.
   */
  send(regionId: number, dst: PublicKey, packet: Uint8Array): boolean {
    if (this.closedFlag) return this.drop('dropClosed');
    const choice = this.routes.route(regionId, dst.hex, this.clock.now());
    if (!choice) return this.drop('dropNoRoute');
    const rc = choice.open ? this.openRegion(choice.regionId) : this.regions.get(choice.regionId);
    this.rearm();
    if (!rc) return this.drop('dropNoRoute');
    if (!rc.send(dst, packet)) return this.drop('dropRegion');
    this.counters.inc('sent');
    return true;
  }

  /**
   * True when a packet for `dst` (home `regionId`, 0 if unknown) sent now would go out on a connected region
   * right away — no dial, no queueing. Has no side effects.
   */
  canSend(regionId: number, dst?: PublicKey): boolean {
    if (this.closedFlag) return false;
    const choice = this.routes.peek(regionId, dst?.hex);
    return choice !== undefined && !choice.open && this.regions.get(choice.regionId)?.connected === true;
  }

  /** True when the region's connection is up. */
  isConnected(regionId: number): boolean {
    return this.regions.get(regionId)?.connected === true;
  }

  /**
   * DERP-level Ping/Pong RTT to a region (ms), dialling it if needed (the ping counts as a write for idle close).
   * Rejects with BAD_CONFIG (unknown region), TIMEOUT, CLOSED or ABORTED.
   */
  ping(regionId: number, opts: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<number> {
    if (this.closedFlag) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'DerpClient is closed'));
    if (opts.signal?.aborted) return Promise.reject(abortError(opts.signal));
    if (!this.map.regions.has(regionId))
      return Promise.reject(new MeshsockError(ErrorCode.BAD_CONFIG, `DERP map has no region ${regionId}`));
    const open = this.routes.touch(regionId, this.clock.now());
    const rc = open ? this.openRegion(regionId) : this.regions.get(regionId);
    this.rearm();
    if (!rc)
      return Promise.reject(
        new MeshsockError(ErrorCode.BAD_CONFIG, `DERP region ${regionId} has no DERP node to ping`),
      );
    return rc.ping(opts);
  }

  /** Makes the region's client drop its connection and dial again (see RegionClient.reconnect). */
  reconnect(regionId: number): void {
    this.regions.get(regionId)?.reconnect();
  }

  /** Status of every open region, ascending by ID. */
  status(): RegionStatus[] {
    return this.routes.openRegions().flatMap((id) => {
      const rc = this.regions.get(id);
      return rc ? [rc.status()] : [];
    });
  }

  /** Regions with an open (connecting or connected) client, ascending. */
  openRegions(): number[] {
    return this.routes.openRegions();
  }

  /** The region `peer` was last heard on (the reply route), or undefined. */
  regionForPeer(peer: PublicKey): number | undefined {
    return this.routes.heardRegion(peer.hex);
  }

  /**
   * Last time a frame arrived from the region (monotonic ms of the injected clock), for netcheck's home
   * hysteresis (`NetcheckOptions.lastDerpActivity`).
   */
  lastActivity(regionId: number): number | undefined {
    return this.regions.get(regionId)?.lastActivity;
  }

  /**
   * Replaces the DERP map. Open regions that disappeared or whose definition changed are closed; a changed home is
   * redialled with the new definition; a removed home leaves the client without a home.
   */
  setDerpMap(map: DerpMap): void {
    if (this.closedFlag) return;
    const old = this.map;
    this.map = map;
    const home = this.routes.home;
    for (const id of this.routes.openRegions()) {
      const next = map.regions.get(id);
      if (next && JSON.stringify(next) === JSON.stringify(old.regions.get(id))) continue;
      this.closeRegion(id, 'removed');
      if (next && id === home) this.apply(this.routes.setHome(id, this.clock.now()));
    }
  }

  /** Closes every region connection; later sends return false. Idempotent. */
  close(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    this.timer.stop();
    for (const id of [...this.regions.keys()]) this.closeRegion(id, 'removed');
  }

  private drop(reason: DerpClientCounter): false {
    this.counters.inc(reason);
    publish(channels.drop, () => ({ where: 'derp-client', reason }));
    return false;
  }

  private apply(actions: DerpRoutesAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'open':
          this.openRegion(a.regionId);
          break;
        case 'close':
          this.closeRegion(a.regionId, a.reason);
          break;
        case 'notePreferred':
          this.regions.get(a.regionId)?.notePreferred(a.preferred);
          break;
      }
    }
    this.rearm();
  }

  private openRegion(regionId: number): RegionClient | undefined {
    const existing = this.regions.get(regionId);
    if (existing) return existing;
    const region: DerpRegion | undefined = this.map.regions.get(regionId);
    if (!region) return undefined;
    let rc: RegionClient;
    try {
      rc = new RegionClient({
        ...this.opts.region,
        region,
        privateKey: this.opts.privateKey,
        clock: this.clock,
        ...(this.opts.rng ? { rng: this.opts.rng } : {}),
        preferred: regionId === this.routes.home,
      });
    } catch {
      // A region without a DERP node (STUN-only): nothing to dial.
      this.routes.forget(regionId);
      return undefined;
    }
    this.regions.set(regionId, rc);
    this.counters.inc('regionsOpened');
    rc.on('packet', (src, packet) => {
      this.routes.noteHeard(src.hex, regionId);
      this.emit('packet', src, packet, regionId);
    });
    rc.on('peerGone', (key, reason) => {
      this.routes.peerGone(key.hex, regionId);
      this.emit('peerGone', key, reason, regionId);
    });
    rc.on('state', (st) => {
      this.routes.setLinkUp(regionId, st.state === 'connected');
      // A region client that gave up by itself (non-retryable error) is forgotten, so the next send redials.
      if (st.state === 'closed' && this.regions.get(regionId) === rc) {
        this.regions.delete(regionId);
        this.routes.forget(regionId);
      }
      this.emit('state', st);
    });
    rc.start();
    return rc;
  }

  private closeRegion(regionId: number, reason: 'idle' | 'removed'): void {
    const rc = this.regions.get(regionId);
    this.routes.forget(regionId);
    if (!rc) return;
    this.regions.delete(regionId);
    if (reason === 'idle') this.counters.inc('regionsClosedIdle');
    publish(channels.derpClient, () => ({ region: regionId, state: 'closing', reason }));
    rc.close();
  }

  private onTimer(): void {
    if (this.closedFlag) return;
    this.apply(this.routes.handleTimeout(this.clock.now()));
  }

  private rearm(): void {
    if (!this.closedFlag) this.timer.armAt(this.routes.pollTimeout());
  }
}
