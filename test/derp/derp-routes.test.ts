import { describe, expect, it } from 'vitest';
import { DerpRoutes } from '../../src/derp/derp-routes.js';
import { FakeClock } from '../../src/internal/clock.js';

const KNOWN = new Set([1, 2, 3]);
const routes = () => new DerpRoutes((id) => KNOWN.has(id), 60_000);
const P = 'aa'.repeat(32);

describe('DerpRoutes', () => {
  it('setHome opens the home and tells every open region whether it is home', () => {
    const c = new FakeClock();
    const r = routes();
    expect(r.setHome(1, c.now())).toEqual([
      { kind: 'open', regionId: 1 },
      { kind: 'notePreferred', regionId: 1, preferred: true },
    ]);
    r.route(2, P, c.now());
    expect(r.setHome(2, c.now())).toEqual([
      { kind: 'notePreferred', regionId: 1, preferred: false },
      { kind: 'notePreferred', regionId: 2, preferred: true },
    ]);
    expect(r.setHome(2, c.now())).toEqual([]);
  });

  it('routes to the peer region when open, else opens it on demand', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    expect(r.route(1, P, c.now())).toEqual({ regionId: 1, open: false, via: 'region' });
    expect(r.route(2, P, c.now())).toEqual({ regionId: 2, open: true, via: 'on-demand' });
    expect(r.route(2, P, c.now())).toEqual({ regionId: 2, open: false, via: 'region' });
    expect(r.route(9, P, c.now())).toBeUndefined();
    expect(r.route(0, P, c.now())).toBeUndefined();
  });

  it('reply route: answers on the region the peer was heard on instead of dialling its home', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    r.setLinkUp(1, true);
    r.noteHeard(P, 1);
    expect(r.route(3, P, c.now())).toEqual({ regionId: 1, open: false, via: 'reply-route' });
    // Home unknown: last-resort DERP is the reply route.
    expect(r.route(0, P, c.now())).toEqual({ regionId: 1, open: false, via: 'reply-route' });
    expect(r.heardRegion(P)).toBe(1);
  });

  it('forgets a reply route on PeerGone from that region, or when its link drops', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    r.setLinkUp(1, true);
    r.noteHeard(P, 1);
    r.peerGone(P, 2); // another region: no effect
    expect(r.heardRegion(P)).toBe(1);
    r.peerGone(P, 1);
    expect(r.heardRegion(P)).toBeUndefined();
    r.noteHeard(P, 1);
    r.setLinkUp(1, false);
    expect(r.route(3, P, c.now())?.via).toBe('on-demand');
  });

  it('closes non-home regions after 60 s without writes, never the home', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    expect(r.pollTimeout()).toBeUndefined();
    r.route(2, P, c.now());
    expect(r.pollTimeout()).toBe(c.now() + 60_000);
    c.advance(30_000);
    r.route(2, P, c.now()); // a write pushes the deadline
    c.advance(59_999);
    expect(r.handleTimeout(c.now())).toEqual([]);
    c.advance(1);
    expect(r.handleTimeout(c.now())).toEqual([{ kind: 'close', regionId: 2, reason: 'idle' }]);
    expect(r.openRegions()).toEqual([1]);
    c.advance(10 * 60_000);
    expect(r.handleTimeout(c.now())).toEqual([]);
    expect(r.isOpen(1)).toBe(true);
  });

  it('a former home becomes idle-closable after the home moves', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    r.setHome(2, c.now());
    c.advance(60_000);
    expect(r.handleTimeout(c.now())).toEqual([{ kind: 'close', regionId: 1, reason: 'idle' }]);
  });

  it('peek predicts route() without opening anything or counting a write', () => {
    const c = new FakeClock();
    const r = routes();
    r.setHome(1, c.now());
    r.setLinkUp(1, true);
    r.noteHeard(P, 1);
    const before = r.lastWrite(1);
    c.advance(10);
    expect(r.peek(3, P)).toEqual({ regionId: 1, open: false, via: 'reply-route' });
    expect(r.peek(2, undefined)).toEqual({ regionId: 2, open: true, via: 'on-demand' });
    expect(r.peek(0, undefined)).toBeUndefined();
    expect(r.openRegions()).toEqual([1]);
    expect(r.lastWrite(1)).toBe(before);
  });

  it('touch opens and refreshes a region', () => {
    const c = new FakeClock();
    const r = routes();
    expect(r.touch(3, c.now())).toBe(true);
    expect(r.touch(3, c.now())).toBe(false);
    expect(r.lastWrite(3)).toBe(c.now());
  });
});
