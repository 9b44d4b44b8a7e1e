import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../src/derp/conn.js';
import { DERP } from '../../../src/derp/constants.js';
import { encodeFrame, encodeFrameHeaderInto } from '../../../src/derp/frame.js';
import { DerpServer, type DerpServerOptions } from '../../../src/derp/server/index.js';
import { FakeClock } from '../../../src/internal/clock.js';
import { sealTo } from '../../../src/key/box.js';
import { PrivateKey } from '../../../src/key/keys.js';
import { RawClient, until } from '../helpers.js';

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function server(opts: DerpServerOptions = {}): Promise<DerpServer> {
  const s = await DerpServer.listen(opts);
  cleanup.push(() => s.close());
  return s;
}
async function raw(s: DerpServer): Promise<RawClient> {
  const r = await RawClient.open(s.address.port);
  cleanup.push(() => r.destroy());
  return r;
}
async function conn(s: DerpServer, key = PrivateKey.generate()): Promise<DerpConn> {
  const c = await DerpConn.connect({ url: s.url, privateKey: key });
  cleanup.push(() => c.close());
  return c;
}
function header(type: number, len: number): Uint8Array {
  const h = new Uint8Array(5);
  encodeFrameHeaderInto(type, len, h);
  return h;
}

/** Two legitimate clients exchange `n` packets each way; resolves once all arrived. */
async function legitExchange(s: DerpServer, n: number): Promise<void> {
  const ka = PrivateKey.generate();
  const kb = PrivateKey.generate();
  const a = await conn(s, ka);
  const b = await conn(s, kb);
  let atA = 0;
  let atB = 0;
  a.on('frame', (f) => {
    if (f.type === 'recvPacket') atA++;
  });
  b.on('frame', (f) => {
    if (f.type === 'recvPacket') atB++;
  });
  for (let i = 0; i < n; i++) {
    expect(a.sendPacket(kb.publicKey, new Uint8Array(1280).fill(i & 0xff))).toBe(true);
    expect(b.sendPacket(ka.publicKey, new Uint8Array(1280).fill(i & 0xff))).toBe(true);
  }
  await until(() => atA === n && atB === n, `${n} packets each way`);
}

describe('hostile clients against a live DerpServer', () => {
  it('survives garbage before the upgrade', async () => {
    const s = await server();
    const junk = [
      randomBytes(300),
      Buffer.from('\x00\x01\x02 not http\r\n\r\n'),
      Buffer.from('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nBad Header\r\n\r\n'),
      Buffer.from(`GET /derp HTTP/1.1\r\nHost: x\r\nX-Long: ${'a'.repeat(20_000)}\r\n\r\n`),
    ];
    for (const j of junk) {
      const r = await raw(s);
      r.write(j);
      await r.waitClosed();
    }
    expect(s.stats().counters.httpBadRequests).toBeGreaterThanOrEqual(3);
    expect(s.stats().counters.accepts).toBe(0);
    await legitExchange(s, 20);
  });

  it('closes connections that send garbage after the upgrade, counting each kind', async () => {
    const s = await server();
    const cases: [string, Uint8Array][] = [
      ['not ClientInfo first', encodeFrame({ type: 'keepAlive' })],
      ['oversize ClientInfo', header(0x02, DERP.MAX_CLIENT_INFO_LEN + 1)],
      ['random bytes', Uint8Array.from(randomBytes(4096), (b, i) => (i === 1 ? 0xff : b))],
    ];
    for (const [, bytes] of cases) {
      const r = await raw(s);
      await r.upgrade();
      r.write(bytes);
      await r.waitClosed();
    }
    const c = s.stats().counters;
    expect(c.handshakeFailures).toBeGreaterThanOrEqual(1);
    expect(c.oversizeFrames).toBeGreaterThanOrEqual(2);
    expect(s.stats().connections).toBe(0);
    await legitExchange(s, 20);
  });

  it('rejects bad ClientInfo boxes: random, sealed to the wrong key, not JSON, not an object', async () => {
    const s = await server();
    const me = PrivateKey.generate();
    const sealed = [
      randomBytes(80),
      sealTo(me, PrivateKey.generate().publicKey, new TextEncoder().encode('{"version":2}')),
      sealTo(me, s.publicKey, new TextEncoder().encode('not json')),
      sealTo(me, s.publicKey, new TextEncoder().encode('[2]')),
      sealTo(me, s.publicKey, Uint8Array.of(0xff, 0xfe)),
    ];
    for (const box of sealed) {
      const r = await raw(s);
      await r.upgrade();
      r.write(encodeFrame({ type: 'clientInfo', key: me.publicKey.bytes, sealed: box }));
      await r.waitClosed();
    }
    expect(s.stats().counters.handshakeFailures).toBe(sealed.length);
    expect(s.stats().clients).toBe(0);
  });

  it('closes logged-in clients that send oversize or malformed frames', async () => {
    const s = await server();
    const frames: Uint8Array[] = [
      header(0x04, DERP.KEY_LEN + DERP.MAX_PACKET_SIZE + 1), // SendPacket over 64 KiB: rejected from the header
      encodeFrame({ type: 'unknown', frameType: 0x12, payload: new Uint8Array(DERP.MAX_PING_LEN + 1) }), // big Ping
      encodeFrame({ type: 'unknown', frameType: 0x04, payload: new Uint8Array(10) }), // SendPacket shorter than a key
      encodeFrame({ type: 'unknown', frameType: 0x12, payload: new Uint8Array(3) }), // Ping shorter than 8
    ];
    for (const f of frames) {
      const r = await raw(s);
      await r.login(PrivateKey.generate());
      r.write(f);
      await r.waitClosed();
    }
    const c = s.stats().counters;
    expect(c.oversizeFrames).toBe(2);
    expect(c.malformedFrames).toBe(2);
    // Unknown frame types are skipped, not fatal.
    const r = await raw(s);
    await r.login(PrivateKey.generate());
    r.write(encodeFrame({ type: 'unknown', frameType: 0x7e, payload: new Uint8Array(100) }));
    r.write(encodeFrame({ type: 'ping', data: new Uint8Array(8) }));
    await r.wait(() => r.frames.some((f) => f.type === 'pong'), 'Pong after an unknown frame');
    expect(s.stats().counters.unknownFrames).toBe(1);
  });

  it('drops a client that never reads: its packets are dropped, memory stays bounded, others carry on', async () => {
    const clock = new FakeClock();
    const s = await server({ clock });
    const slowKey = PrivateKey.generate();
    const slow = await raw(s);
    await slow.login(slowKey);
    slow.socket.pause(); // never reads again
    const sender = await conn(s);
    const pkt = new Uint8Array(1280);
    let maxQueued = 0;
    let maxBuffered = 0;
    await until(() => {
      for (let i = 0; i < 200 && sender.bufferedAmount < 1 << 20; i++) sender.sendPacket(slowKey.publicKey, pkt);
      const st = s.stats();
      maxQueued = Math.max(maxQueued, st.queuedFrames);
      maxBuffered = Math.max(maxBuffered, st.socketBufferedBytes);
      return st.counters.dropQueueFull > 100;
    }, 'server dropping for the slow reader');
    // Bounded: at most the two queues' depth, and the socket holds at most the high-water mark plus one batch.
    expect(maxQueued).toBeLessThanOrEqual(2 * DERP.SEND_QUEUE_DEPTH);
    expect(maxBuffered).toBeLessThan(DERP.SERVER_SOCKET_HIGH_WATER + 2 * (DERP.MAX_PACKET_SIZE + 64));
    // Meanwhile legitimate clients are unaffected.
    await legitExchange(s, 50);
    // After the write timeout without progress, the slow client is disconnected.
    clock.advance(DERP.WRITE_TIMEOUT_MS + 2 * DERP.SERVER_TICK_MS);
    await until(() => s.stats().counters.writeTimeouts === 1, 'write timeout');
    expect(s.stats().clients).toBe(3); // sender and the legitimate pair
  });

  it('caps the Pongs queued for a client that sends Pings but never reads', async () => {
    const s = await server();
    const r = await raw(s);
    await r.login(PrivateKey.generate());
    r.socket.pause();
    const batch = Buffer.concat(
      Array.from({ length: 10_000 }, () => encodeFrame({ type: 'ping', data: new Uint8Array(8) })),
    );
    await until(() => {
      if (r.socket.writableLength < 1 << 20) r.socket.write(batch);
      return s.stats().counters.controlDropped > 0;
    }, 'control frames capped');
    await legitExchange(s, 20);
  });

  it('holds 1,000 idle connections while legitimate clients keep exchanging data', async () => {
    const s = await server();
    const sockets: Socket[] = [];
    cleanup.push(() => sockets.forEach((x) => x.destroy()));
    const open = (): Promise<Socket> =>
      new Promise((resolve, reject) => {
        const x = connect(s.address.port, '127.0.0.1', () => resolve(x));
        x.on('error', reject);
        sockets.push(x);
      });
    // 400 bare TCP connections, 300 upgraded without a ClientInfo, 300 logged in and silent.
    for (let i = 0; i < 400; i += 50) await Promise.all(Array.from({ length: 50 }, open));
    const upgraded: RawClient[] = [];
    for (let i = 0; i < 300; i += 50)
      upgraded.push(
        ...(await Promise.all(
          Array.from({ length: 50 }, async () => {
            const r = await raw(s);
            await r.upgrade();
            return r;
          }),
        )),
      );
    for (let i = 0; i < 300; i += 50)
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          const r = await raw(s);
          await r.login(PrivateKey.generate());
        }),
      );
    expect(s.stats().connections).toBe(600);
    expect(s.stats().clients).toBe(300);
    expect(s.stats().handshaking).toBe(300);
    await legitExchange(s, 200);
    expect(s.stats().counters.packetsSent).toBe(400);
    void upgraded;
  });
});
