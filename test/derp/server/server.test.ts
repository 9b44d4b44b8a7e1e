import { request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../src/derp/conn.js';
import { DERP, PeerGoneReason, PeerPresentFlags } from '../../../src/derp/constants.js';
import { encodeFrame } from '../../../src/derp/frame.js';
import { DerpServer, type DerpServerOptions } from '../../../src/derp/server/index.js';
import { DISCO_MAGIC } from '../../../src/disco/envelope.js';
import { FakeClock } from '../../../src/internal/clock.js';
import { PrivateKey, PublicKey } from '../../../src/key/keys.js';
import { closed, nextFrame, RawClient, until } from '../helpers.js';

const MESH = 'cd'.repeat(32);
let servers: DerpServer[] = [];
let conns: DerpConn[] = [];
afterEach(async () => {
  for (const c of conns) c.close();
  conns = [];
  await Promise.all(servers.map((s) => s.close()));
  servers = [];
});

async function server(opts: DerpServerOptions = {}): Promise<DerpServer> {
  const s = await DerpServer.listen(opts);
  servers.push(s);
  return s;
}
async function client(
  s: DerpServer,
  key = PrivateKey.generate(),
  extra: { meshKey?: string; url?: string } = {},
): Promise<DerpConn> {
  const c = await DerpConn.connect({
    url: extra.url ?? s.url,
    privateKey: key,
    ...(extra.meshKey ? { meshKey: extra.meshKey } : {}),
  });
  conns.push(c);
  return c;
}

/** A packet that the server's disco sniffer classifies as disco: magic, then a 32-byte key and a 24-byte nonce. */
function discoPacket(): Uint8Array {
  const p = new Uint8Array(62 + 20);
  p.set(DISCO_MAGIC, 0);
  return p;
}

function get(
  url: string,
  path: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, path, method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('DerpServer HTTP surface', () => {
  it('answers 426 to /derp without an upgrade, and serves probe, generate_204, health and metrics', async () => {
    const s = await server();
    const r426 = await get(s.url, '/derp');
    expect(r426.status).toBe(426);
    expect(r426.body).toContain('DERP requires connection upgrade');
    expect(s.stats().counters.upgradeRequired).toBe(1);

    for (const p of ['/derp/probe', '/derp/latency-check']) {
      const r = await get(s.url, p);
      expect(r.status).toBe(200);
      expect(r.headers['access-control-allow-origin']).toBe('*');
      expect((await get(s.url, p, {}, 'HEAD')).status).toBe(200);
      expect((await get(s.url, p, {}, 'POST')).status).toBe(405);
    }

    const g = await get(s.url, '/generate_204', { 'X-Tailscale-Challenge': 'abc123' });
    expect(g.status).toBe(204);
    expect(g.headers['x-tailscale-response']).toBe('response abc123');
    const bad = await get(s.url, '/generate_204', { 'X-Tailscale-Challenge': 'no spaces allowed' });
    expect(bad.headers['x-tailscale-response']).toBeUndefined();

    const h = await get(s.url, '/health');
    expect(h.status).toBe(200);
    const health = JSON.parse(h.body) as Record<string, unknown>;
    expect(health.status).toBe('ok');
    expect(health.publicKey).toBe(s.publicKey.toString());

    await client(s);
    const m = await get(s.url, '/metrics');
    expect(m.status).toBe(200);
    expect(m.body).toMatch(/^derp_current_connections 1$/m);
    expect(m.body).toMatch(/^derp_accepts_total 1$/m);
    expect(m.body).toMatch(/^derp_upgrade_required_total 1$/m);
    expect((await get(s.url, '/nope')).status).toBe(404);
  });

  it('keeps metrics per server (two servers, two registries)', async () => {
    const a = await server();
    const b = await server();
    await client(a);
    expect((await get(a.url, '/metrics')).body).toMatch(/^derp_current_connections 1$/m);
    expect((await get(b.url, '/metrics')).body).toMatch(/^derp_current_connections 0$/m);
  });

  it('upgrades with 101, Upgrade: DERP, Derp-Version: 2 and Derp-Public-Key, then sends ServerKey', async () => {
    const s = await server();
    const raw = await RawClient.open(s.address.port);
    try {
      const key = await raw.upgrade();
      expect(raw.headers).toMatch(/^HTTP\/1\.1 101 /);
      expect(raw.headers).toMatch(/\r\nUpgrade: DERP\r\n/i);
      expect(raw.headers).toMatch(/\r\nDerp-Version: 2\r\n/i);
      expect(raw.headers).toContain(`Derp-Public-Key: ${s.publicKey.hex}`);
      expect(key.equals(s.publicKey)).toBe(true);
    } finally {
      raw.destroy();
    }
  });

  it('honours Derp-Fast-Start: no HTTP response, frames straight away', async () => {
    const s = await server();
    const raw = await RawClient.open(s.address.port);
    try {
      raw.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Fast-Start: 1\r\n\r\n');
      const first = await new Promise<Buffer>((r) => raw.socket.once('data', r));
      expect(first[0]).toBe(0x01); // the ServerKey frame type, no "HTTP/1.1 101"
    } finally {
      raw.destroy();
    }
  });

  it('refuses a WebSocket upgrade that does not offer the derp subprotocol, and unknown upgrades', async () => {
    const s = await server();
    const raw = await RawClient.open(s.address.port);
    raw.write(
      'GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat\r\n\r\n',
    );
    await raw.waitClosed();
    const raw2 = await RawClient.open(s.address.port);
    raw2.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n');
    await raw2.waitClosed();
    expect(s.stats().counters.accepts).toBe(0);
  });
});

describe('DerpServer relaying', () => {
  it('sends PeerGone{Disconnected} to every client the departing one sent packets to, and only to them', async () => {
    const s = await server();
    const ka = PrivateKey.generate();
    const kb = PrivateKey.generate();
    const a = await client(s, ka);
    const b = await client(s, kb);
    const c = await client(s);
    let cGotGone = false;
    c.on('frame', (f) => {
      if (f.type === 'peerGone') cGotGone = true;
    });
    const got = nextFrame(b, 'recvPacket');
    a.sendPacket(kb.publicKey, new Uint8Array([1]));
    await got;
    const gone = nextFrame(b, 'peerGone');
    a.close();
    const f = await gone;
    expect(new PublicKey(f.key).equals(ka.publicKey)).toBe(true);
    expect(f.reason).toBe(PeerGoneReason.DISCONNECTED);
    // c received nothing from a; a sync point after the PeerGone: a Pong on c.
    const pong = nextFrame(c, 'pong');
    c.ping(new Uint8Array(8));
    await pong;
    expect(cGotGone).toBe(false);
  });

  it('answers disco packets to unknown keys with PeerGone{NotHere}, 1/s with a burst of 3, and not data packets', async () => {
    const clock = new FakeClock();
    const s = await server({ clock });
    const a = await client(s);
    const nobody = PrivateKey.generate().publicKey;
    const notHere: Uint8Array[] = [];
    a.on('frame', (f) => {
      if (f.type === 'peerGone' && f.reason === PeerGoneReason.NOT_HERE) notHere.push(Uint8Array.from(f.key));
    });
    a.sendPacket(nobody, new Uint8Array(100)); // data: dropped silently
    for (let i = 0; i < 5; i++) a.sendPacket(nobody, discoPacket());
    await until(() => s.stats().counters.notHereRateLimited === 2, 'rate limiting');
    const pong = nextFrame(a, 'pong');
    a.ping(new Uint8Array(8));
    await pong;
    expect(notHere).toHaveLength(3);
    expect(new PublicKey(notHere[0]!).equals(nobody)).toBe(true);
    expect(s.stats().counters.dropUnknownDest).toBe(6);
    clock.advance(1_000); // one token back
    a.sendPacket(nobody, discoPacket());
    await until(() => notHere.length === 4, 'NotHere after refill');
  });

  it('relays runs of SendPackets in one segment intact and in order, across keys, disco and split frames', async () => {
    const s = await server();
    const kb = PrivateKey.generate();
    const kc = PrivateKey.generate();
    const b = await client(s, kb);
    const c = await client(s, kc);
    const atB: Uint8Array[] = [];
    const atC: Uint8Array[] = [];
    const srcs = new Set<string>();
    b.on('frame', (f) => {
      if (f.type !== 'recvPacket') return;
      atB.push(Uint8Array.from(f.packet));
      srcs.add(new PublicKey(f.src).hex);
    });
    c.on('frame', (f) => {
      if (f.type === 'recvPacket') atC.push(Uint8Array.from(f.packet));
    });
    const raw = await RawClient.open(s.address.port);
    const ka = PrivateKey.generate();
    await raw.login(ka);
    const pkt = (n: number, len = 300): Uint8Array => new Uint8Array(len).fill(n);
    const disco = discoPacket();
    disco[70] = 9;
    const sends: [PublicKey, Uint8Array][] = [
      [kb.publicKey, pkt(1)],
      [kb.publicKey, pkt(2)],
      [kb.publicKey, pkt(3, 1280)],
      [kc.publicKey, pkt(4)],
      [kb.publicKey, disco],
      [kb.publicKey, pkt(5)],
      [kb.publicKey, pkt(6, 0)],
      [kb.publicKey, pkt(7)],
    ];
    const bytes = Buffer.concat(sends.map(([k, p]) => encodeFrame({ type: 'sendPacket', dst: k.bytes, packet: p })));
    // One segment with every frame, then the same again split at an awkward offset.
    raw.write(bytes);
    raw.write(bytes.subarray(0, 333));
    raw.write(bytes.subarray(333));
    await until(() => atB.length === 14 && atC.length === 2, 'all packets');
    const expectB = sends.filter(([k]) => k === kb.publicKey).map(([, p]) => p);
    expect(atB).toEqual([...expectB, ...expectB]);
    expect(atC).toEqual([pkt(4), pkt(4)]);
    expect([...srcs]).toEqual([ka.publicKey.hex]); // every frame of a run was re-keyed
    raw.destroy();
  });

  it('records NotePreferred', async () => {
    const s = await server();
    const a = await client(s);
    a.notePreferred(true);
    await until(() => s.stats().preferred === 1, 'preferred');
    a.notePreferred(false);
    await until(() => s.stats().preferred === 0, 'not preferred');
  });

  it('with duplicate connections for one key the last one wins, and the one that sends takes over', async () => {
    const s = await server();
    const kd = PrivateKey.generate();
    const sender = await client(s);
    const d1 = await client(s, kd);
    const d2 = await client(s, kd);
    expect(s.stats().counters.duplicateConnections).toBe(1);
    const at2 = nextFrame(d2, 'recvPacket');
    sender.sendPacket(kd.publicKey, new Uint8Array([2]));
    expect([...(await at2).packet]).toEqual([2]);
    // d1 sends something: it becomes the active connection for kd.
    d1.sendPacket(PrivateKey.generate().publicKey, new Uint8Array([0]));
    await until(() => s.stats().counters.dropUnknownDest === 1, 'd1 send');
    const at1 = nextFrame(d1, 'recvPacket');
    sender.sendPacket(kd.publicKey, new Uint8Array([1]));
    expect([...(await at1).packet]).toEqual([1]);
    // When the active one leaves, the other takes over; no PeerGone since kd is still here.
    d1.close();
    await until(() => s.stats().connections === 2, 'd1 gone');
    const again = nextFrame(d2, 'recvPacket');
    sender.sendPacket(kd.publicKey, new Uint8Array([3]));
    expect([...(await again).packet]).toEqual([3]);
    expect(s.stats().counters.peerGoneSent).toBe(0);
  });

  it('sends KeepAlive every 60 s plus jitter (fake clock)', async () => {
    const clock = new FakeClock();
    const s = await server({ clock });
    const a = await client(s);
    let keepAlives = 0;
    a.on('frame', (f) => {
      if (f.type === 'keepAlive') keepAlives++;
    });
    clock.advance(59_000);
    expect(s.stats().counters.keepAlivesSent).toBe(0);
    clock.advance(DERP.KEEPALIVE_JITTER_MS + 1_000 + DERP.SERVER_TICK_MS);
    expect(s.stats().counters.keepAlivesSent).toBe(1);
    await until(() => keepAlives === 1, 'KeepAlive frame');
  });

  it('closes a connection that does not finish the handshake within 10 s (fake clock)', async () => {
    const clock = new FakeClock();
    const s = await server({ clock });
    const raw = await RawClient.open(s.address.port);
    await raw.upgrade();
    clock.advance(DERP.HANDSHAKE_TIMEOUT_MS - DERP.SERVER_TICK_MS);
    expect(raw.ended).toBe(false);
    clock.advance(2 * DERP.SERVER_TICK_MS);
    await raw.waitClosed();
    expect(s.stats().counters.handshakeTimeouts).toBe(1);
  });

  it('throttles reading past the per-client rate limit and resumes when tokens refill; mesh peers are exempt', async () => {
    const clock = new FakeClock();
    const s = await server({ clock, rateLimit: { bytesPerSec: 10_000, burst: 1 }, meshKey: MESH });
    const kb = PrivateKey.generate();
    const a = await client(s);
    const b = await client(s, kb);
    let got = 0;
    b.on('frame', (f) => {
      if (f.type === 'recvPacket') got++;
    });
    // Burst raised to 64 KiB + 32; 100 packets of 1 KiB exceed it, the client's own bucket is advisory here.
    const raw = await RawClient.open(s.address.port);
    await raw.login(PrivateKey.generate());
    const frame = encodeFrame({ type: 'sendPacket', dst: kb.publicKey.bytes, packet: new Uint8Array(1000) });
    for (let i = 0; i < 100; i++) raw.write(frame);
    await until(() => s.stats().counters.rateLimitedPauses >= 1, 'throttled');
    const before = got;
    expect(before).toBeLessThan(100);
    // Each pause lasts until the balance is back to zero; move time on until everything is through.
    await until(() => {
      clock.advance(1_000);
      return got === 100;
    }, 'all delivered after refill');
    expect(s.stats().counters.rateLimitedPauses).toBeGreaterThanOrEqual(1);
    raw.destroy();
    // The mesh peer has no bucket and its ServerInfo advertises none.
    const m = await client(s, PrivateKey.generate(), { meshKey: MESH });
    expect(m.serverInfo.tokenBucketBytesPerSecond).toBeUndefined();
    expect(a.serverInfo.tokenBucketBytesPerSecond).toBe(10_000);
  });
});

describe('DerpServer mesh-key frames', () => {
  it('closes a client without the mesh key that sends WatchConns, ClosePeer or ForwardPacket', async () => {
    const s = await server({ meshKey: MESH });
    for (const send of [
      (c: DerpConn) => c.watchConns(),
      (c: DerpConn) => c.closePeer(PrivateKey.generate().publicKey),
      (c: DerpConn) =>
        c.forwardPacket(PrivateKey.generate().publicKey, PrivateKey.generate().publicKey, new Uint8Array(1)),
    ]) {
      const c = await client(s, PrivateKey.generate(), { meshKey: 'ef'.repeat(32) }); // wrong key: ordinary client
      const done = closed(c);
      send(c);
      await done;
    }
    expect(s.stats().counters.permissionDenied).toBe(3);
  });

  it('lets a mesh-key holder watch connections, close peers and forward packets', async () => {
    const s = await server({ meshKey: MESH, verifyClient: () => false });
    // The admission hook refuses everyone, but mesh-key holders are always admitted.
    const existing = PrivateKey.generate();
    const watcher = await client(s, PrivateKey.generate(), { meshKey: MESH });
    const other = await client(s, PrivateKey.generate(), { meshKey: MESH }).catch(() => undefined);
    expect(other).toBeDefined();
    await expect(client(s, existing)).rejects.toThrow(/refused/);
    const s2 = await server({ meshKey: MESH });
    const w = await client(s2, PrivateKey.generate(), { meshKey: MESH });
    const ke = PrivateKey.generate();
    const e = await client(s2, ke);
    const present = nextFrame(w, 'peerPresent', (f) => new PublicKey(f.key).equals(ke.publicKey));
    w.watchConns();
    const p = await present;
    expect(p.endpoint?.ip).toBe('127.0.0.1');
    expect(p.endpoint?.port).toBe(e.localAddress?.port);
    expect(p.flags).toBe(PeerPresentFlags.REGULAR);
    // Arrivals and departures stream to the watcher.
    const kn = PrivateKey.generate();
    const arrived = nextFrame(w, 'peerPresent', (f) => new PublicKey(f.key).equals(kn.publicKey));
    const n = await client(s2, kn);
    await arrived;
    const left = nextFrame(w, 'peerGone', (f) => new PublicKey(f.key).equals(kn.publicKey));
    n.close();
    expect((await left).reason).toBe(PeerGoneReason.DISCONNECTED);
    // ForwardPacket is delivered locally with the given source.
    const src = PrivateKey.generate().publicKey;
    const atE = nextFrame(e, 'recvPacket');
    w.forwardPacket(src, ke.publicKey, new Uint8Array([7]));
    const fwd = await atE;
    expect(new PublicKey(fwd.src).equals(src)).toBe(true);
    expect(s2.stats().counters.packetsForwardedIn).toBe(1);
    // ClosePeer closes the target's connections.
    const eClosed = closed(e);
    w.closePeer(ke.publicKey);
    await eClosed;
    expect(s2.stats().counters.closePeerRequests).toBe(1);
    void watcher;
  });
});
