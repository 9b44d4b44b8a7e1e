/**
 * DerpClient against real local DerpServers on loopback: two regions = two servers on different ports.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpClient } from '../../src/derp/derp-client.js';
import { parseDerpMap, type DerpMap } from '../../src/derp/derp-map.js';
import { HomeRegionSelector } from '../../src/derp/home-region.js';
import { DerpServer } from '../../src/derp/server/index.js';
import { FakeClock } from '../../src/internal/clock.js';
import { PrivateKey, type PublicKey } from '../../src/key/keys.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function server(port = 0): Promise<DerpServer> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port });
  cleanup.push(() => s.close());
  return s;
}

function mapOf(regions: Record<number, string>): DerpMap {
  return parseDerpMap({
    regions: Object.entries(regions).map(([id, url]) => ({
      regionId: Number(id),
      regionCode: `r${id}`,
      nodes: [{ url: url.replace(/\/derp$/, '') }],
    })),
  });
}

function client(map: DerpMap, extra: Partial<ConstructorParameters<typeof DerpClient>[0]> = {}): DerpClient {
  const c = new DerpClient({
    privateKey: PrivateKey.generate(),
    derpMap: map,
    region: { backoff: { minMs: 20, maxMs: 200 } },
    ...extra,
  });
  cleanup.push(() => c.close());
  return c;
}

const keyOf = (c: DerpClient): PublicKey => c.publicKey;

function nextPacket(c: DerpClient): Promise<{ src: PublicKey; data: string; region: number }> {
  return new Promise((resolve) =>
    c.once('packet', (src, packet, region) => resolve({ src, data: Buffer.from(packet).toString(), region })),
  );
}

function until(c: DerpClient, pred: () => boolean): Promise<void> {
  if (pred()) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (): void => {
      if (pred()) {
        c.off('state', on);
        resolve();
      }
    };
    c.on('state', on);
  });
}

const connected = (c: DerpClient, region: number) => () => c.status().some((s) => s.regionId === region && s.connected);

/** A TCP relay that holds every chunk `delayMs` in each direction: a real, measurable extra latency. */
async function delayProxy(target: number, delayMs: number): Promise<{ port: number; server: Server }> {
  const socks = new Set<Socket>();
  const srv = createServer((down) => {
    const up = netConnect(target, '127.0.0.1');
    socks.add(down).add(up);
    const pipe = (a: Socket, b: Socket) => {
      a.on('data', (d) => setTimeout(() => b.writable && b.write(d), delayMs));
      a.on('close', () => setTimeout(() => b.destroy(), delayMs));
      a.on('error', () => b.destroy());
    };
    pipe(down, up);
    pipe(up, down);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  );
  return { port: (srv.address() as { port: number }).port, server: srv };
}

describe('DerpClient on loopback DERP servers', () => {
  it('connects the home, sends and receives across regions, answers via the reply route', async () => {
    const s1 = await server();
    const s2 = await server();
    const map = mapOf({ 901: s1.url, 902: s2.url });
    const alice = client(map);
    const bob = client(map);
    alice.setHome(901);
    bob.setHome(902);
    await until(alice, connected(alice, 901));
    await until(bob, connected(bob, 902));
    expect(alice.status()[0]).toMatchObject({ regionId: 901, connected: true, preferred: true });
    expect(alice.status()[0]!.serverKey!.equals(s1.publicKey)).toBe(true);

    // Alice → Bob: Bob's home 902 is not open at Alice, so it is dialled on demand (the packet waits in the queue).
    const got = nextPacket(bob);
    expect(alice.send(902, keyOf(bob), Buffer.from('hello bob'))).toBe(true);
    const p = await got;
    expect(p).toMatchObject({ data: 'hello bob', region: 902 });
    expect(p.src.equals(keyOf(alice))).toBe(true);
    expect(alice.openRegions()).toEqual([901, 902]);
    expect(bob.regionForPeer(keyOf(alice))).toBe(902);

    // canSend: Bob has 902 up and heard Alice there; 901 is not open at Bob, so only the reply route makes it true.
    expect(bob.canSend(901, keyOf(alice))).toBe(true);
    expect(bob.canSend(901)).toBe(false);
    expect(bob.isConnected(902)).toBe(true);

    // Bob → Alice addressed to Alice's home 901: Bob has 901 closed but heard Alice on 902, so the reply goes there.
    const back = nextPacket(alice);
    expect(bob.send(901, keyOf(alice), Buffer.from('hi alice'))).toBe(true);
    expect(await back).toMatchObject({ data: 'hi alice', region: 902 });
    expect(bob.openRegions()).toEqual([902]);

    // Home unknown (0): last-resort is the region the peer was last heard on.
    const third = nextPacket(alice);
    expect(bob.send(0, keyOf(alice), Buffer.from('third'))).toBe(true);
    expect((await third).region).toBe(902);

    // A key nobody heard from, home unknown: no route, dropped and counted.
    expect(bob.send(0, PrivateKey.generate().publicKey, new Uint8Array(1))).toBe(false);
    expect(bob.counters.get('dropNoRoute')).toBe(1);

    // DERP-level ping over the real link.
    const rtt = await alice.ping(901);
    expect(rtt).toBeGreaterThanOrEqual(0);
    expect(alice.status().find((s) => s.regionId === 901)!.latencyMs).toBe(rtt);

    // Bob leaving region 902 tells Alice (who Bob sent packets to) PeerGone{Disconnected}.
    const gone = new Promise<[PublicKey, number, number]>((r) =>
      alice.once('peerGone', (k, reason, reg) => r([k, reason, reg])),
    );
    bob.close();
    const [k, reason, reg] = await gone;
    expect(k.equals(keyOf(bob))).toBe(true);
    expect([reason, reg]).toEqual([0, 902]);
  });

  it('home selection from measured latency, NotePreferred to the home only', async () => {
    const s1 = await server();
    const s2 = await server();
    // Region 902 sits behind a relay adding 40 ms each way.
    const slow = await delayProxy(s2.address.port, 40);
    const map = mapOf({ 901: s1.url, 902: `http://127.0.0.1:${slow.port}` });
    const c = client(map);
    const lat = new Map<number, number>();
    for (const id of [901, 902]) lat.set(id, await c.ping(id, { timeoutMs: 3000 }));
    expect(lat.get(902)!).toBeGreaterThan(lat.get(901)!);
    const selector = new HomeRegionSelector();
    const decision = selector.addReport({ regionLatency: lat, reportStart: 0 }, map, 1);
    expect(decision).toMatchObject({ regionId: 901, reason: 'best' });
    c.setHome(decision.regionId);
    // NotePreferred(true) reached 901 and NotePreferred(false) reached 902.
    await expect.poll(() => [s1.stats().preferred, s2.stats().preferred]).toEqual([1, 0]);
    c.setHome(902);
    await expect.poll(() => [s1.stats().preferred, s2.stats().preferred]).toEqual([0, 1]);
  });

  it('closes a non-home region after 60 s without writes (injected clock), keeps the home', async () => {
    const s1 = await server();
    const s2 = await server();
    const clock = new FakeClock();
    const map = mapOf({ 901: s1.url, 902: s2.url });
    const c = client(map, { clock });
    c.setHome(901);
    expect(c.send(902, PrivateKey.generate().publicKey, new Uint8Array([1]))).toBe(true);
    await until(c, () => connected(c, 901)() && connected(c, 902)());
    await expect.poll(() => s2.stats().clients).toBe(1);
    clock.advance(59_999);
    expect(c.openRegions()).toEqual([901, 902]);
    clock.advance(1);
    expect(c.openRegions()).toEqual([901]);
    expect(c.counters.get('regionsClosedIdle')).toBe(1);
    await expect.poll(() => s2.stats().clients).toBe(0);
    // The home stays open however long it is idle. (Kept under DerpConn's 120 s read timeout, which runs on the
    // same injected clock and would otherwise declare the silent test server dead.)
    clock.advance(50_000);
    expect(c.openRegions()).toEqual([901]);
    await new Promise((r) => setTimeout(r, 50));
    expect(s1.stats().clients).toBe(1);
    expect(connected(c, 901)()).toBe(true);
  });

  it('reconnects after the server restarts on the same port', async () => {
    const first = await DerpServer.listen({ host: '127.0.0.1', port: 0 });
    const port = first.address.port;
    const map = mapOf({ 901: first.url });
    const a = client(map);
    const b = client(map);
    a.setHome(901);
    b.setHome(901);
    await until(a, connected(a, 901));
    await until(b, connected(b, 901));
    const oldKey = a.status()[0]!.serverKey!;
    await first.close();
    await until(a, () => !connected(a, 901)());
    // Sends while the region is down are dropped and counted, not thrown.
    const dropped = a.send(901, keyOf(b), new Uint8Array([1]));
    const second = await server(port);
    await until(a, connected(a, 901));
    await until(b, connected(b, 901));
    expect(a.status()[0]!.serverKey!.equals(second.publicKey)).toBe(true);
    expect(a.status()[0]!.serverKey!.equals(oldKey)).toBe(false);
    if (!dropped) expect(a.counters.get('dropRegion')).toBeGreaterThan(0);
    const got = nextPacket(b);
    expect(a.send(901, keyOf(b), Buffer.from('after restart'))).toBe(true);
    expect((await got).data).toBe('after restart');
  });
});
