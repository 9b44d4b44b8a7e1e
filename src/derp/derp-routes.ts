/**
 * Which DERP region a packet goes out on, which regions stay open, and when idle ones close — the sans-IO core of
 * `DerpClient` (after magicsock's `derpWriteChanForRegion`, `derpRoute`, `cleanStaleDerp`; tailscale-protocols.md
 * §2.7).
 *
 * Routing rule for a packet to `peer` whose home is `region`:
 *   1. `region`'s connection is open → use it.
 *   2. else, the region we last heard `peer` on (the reply route, issue #150) is open → use that; no new dial.
 *   3. else, `region` is known → open it on demand and use it.
 *   4. `region` 0 (home unknown) → the reply route if one is open (last-resort DERP), else nothing.
 * Each use counts as a write to the chosen region. The home region is kept forever; every other open region
 * closes once it has gone `idleCloseMs` (60 s) without a write. Reply routes are forgotten when the peer is
 * reported gone on that region, or when that region's link goes down or closes.
 *
 * Times are the caller's monotonic milliseconds; nothing here reads a clock or touches a socket.
 */
import { DERP } from './constants.js';

export type DerpRoutesAction =
  /** Ensure a connection to the region exists and is started. */
  | { readonly kind: 'open'; readonly regionId: number }
  /** Close the region's connection. */
  | { readonly kind: 'close'; readonly regionId: number; readonly reason: 'idle' | 'removed' }
  /** Tell an open region whether it is our home. */
  | { readonly kind: 'notePreferred'; readonly regionId: number; readonly preferred: boolean };

/** Where a packet should go. `open` is true when the region must be dialled first. */
export interface RouteChoice {
  readonly regionId: number;
  readonly open: boolean;
  /** Which rule chose it. */
  readonly via: 'region' | 'reply-route' | 'on-demand';
}

export class DerpRoutes {
  private homeId = 0;
  /** Open regions → last write time. */
  private readonly active = new Map<number, number>();
  /** Regions whose link is up (routes via a down region are not used). */
  private readonly up = new Set<number>();
  /** peer hex → region we last heard it on. */
  private readonly heardOn = new Map<string, number>();

  constructor(
    private readonly isKnownRegion: (regionId: number) => boolean,
    private readonly idleCloseMs: number = DERP.INACTIVE_REGION_CLOSE_MS,
  ) {}

  get home(): number {
    return this.homeId;
  }

  /** Regions currently open, ascending. */
  openRegions(): number[] {
    return [...this.active.keys()].sort((a, b) => a - b);
  }

  isOpen(regionId: number): boolean {
    return this.active.has(regionId);
  }

  /** Last write to an open region. */
  lastWrite(regionId: number): number | undefined {
    return this.active.get(regionId);
  }

  /**
   * Makes `regionId` the home (0 clears it): opens it if needed and tells every open region whether it is home.
   */
  setHome(regionId: number, now: number): DerpRoutesAction[] {
    const out: DerpRoutesAction[] = [];
    if (regionId === this.homeId) return out;
    this.homeId = regionId;
    if (regionId !== 0 && !this.active.has(regionId)) {
      this.active.set(regionId, now);
      out.push({ kind: 'open', regionId });
    }
    for (const id of this.openRegions()) out.push({ kind: 'notePreferred', regionId: id, preferred: id === regionId });
    return out;
  }

  /** Chooses the region for a packet to `peerHex` whose home is `regionId` (0 if unknown); see the module header. */
  route(regionId: number, peerHex: string | undefined, now: number): RouteChoice | undefined {
    if (regionId !== 0 && this.active.has(regionId)) {
      this.active.set(regionId, now);
      return { regionId, open: false, via: 'region' };
    }
    if (peerHex !== undefined) {
      const r = this.heardOn.get(peerHex);
      if (r !== undefined && this.active.has(r) && this.up.has(r)) {
        this.active.set(r, now);
        return { regionId: r, open: false, via: 'reply-route' };
      }
    }
    if (regionId === 0 || !this.isKnownRegion(regionId)) return undefined;
    this.active.set(regionId, now);
    return { regionId, open: true, via: 'on-demand' };
  }

  /** Where `route` would send, without choosing, opening or counting a write. */
  peek(regionId: number, peerHex: string | undefined): RouteChoice | undefined {
    if (regionId !== 0 && this.active.has(regionId)) return { regionId, open: false, via: 'region' };
    if (peerHex !== undefined) {
      const r = this.heardOn.get(peerHex);
      if (r !== undefined && this.active.has(r) && this.up.has(r))
        return { regionId: r, open: false, via: 'reply-route' };
    }
    if (regionId === 0 || !this.isKnownRegion(regionId)) return undefined;
    return { regionId, open: true, via: 'on-demand' };
  }

  /** Marks a region as used now (e.g. a DERP ping), opening it if needed; true when it must be dialled. */
  touch(regionId: number, now: number): boolean {
    const open = !this.active.has(regionId);
    this.active.set(regionId, now);
    return open;
  }

  /** A packet from `peerHex` arrived on `regionId`: remember it as the reply route. */
  noteHeard(peerHex: string, regionId: number): void {
    this.heardOn.set(peerHex, regionId);
  }

  /** The region we last heard `peerHex` on, if any (whether or not it is open now). */
  heardRegion(peerHex: string): number | undefined {
    return this.heardOn.get(peerHex);
  }

  /** The server said `peerHex` is gone from `regionId`: forget that route. */
  peerGone(peerHex: string, regionId: number): void {
    if (this.heardOn.get(peerHex) === regionId) this.heardOn.delete(peerHex);
  }

  /** The region's link came up or went down. Going down forgets every reply route through it. */
  setLinkUp(regionId: number, up: boolean): void {
    if (up) {
      this.up.add(regionId);
      return;
    }
    this.up.delete(regionId);
    for (const [peer, r] of this.heardOn) if (r === regionId) this.heardOn.delete(peer);
  }

  /** Forgets an open region (closed by the caller or removed from the map). */
  forget(regionId: number): void {
    this.active.delete(regionId);
    this.setLinkUp(regionId, false);
    if (regionId === this.homeId) this.homeId = 0;
  }

  /** Next time `handleTimeout` has work: the earliest idle deadline of a non-home open region. */
  pollTimeout(): number | undefined {
    let t: number | undefined;
    for (const [id, w] of this.active) {
      if (id === this.homeId) continue;
      const due = w + this.idleCloseMs;
      if (t === undefined || due < t) t = due;
    }
    return t;
  }

  /** Closes non-home regions idle for `idleCloseMs` or more. */
  handleTimeout(now: number): DerpRoutesAction[] {
    const out: DerpRoutesAction[] = [];
    for (const [id, w] of [...this.active]) {
      if (id === this.homeId || now - w < this.idleCloseMs) continue;
      this.forget(id);
      out.push({ kind: 'close', regionId: id, reason: 'idle' });
    }
    return out;
  }
}
