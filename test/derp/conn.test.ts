import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DerpConn } from '../../src/derp/conn.js';
import { DERP } from '../../src/derp/constants.js';
import { encodeFrame, FrameReader } from '../../src/derp/frame.js';
import { DerpServer } from '../../src/derp/server/index.js';
import { upgradeResponse } from '../../src/derp/server/handshake.js';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import { FakeClock } from '../../src/internal/clock.js';
import { openFrom, sealTo } from '../../src/key/box.js';
import { PrivateKey, PublicKey } from '../../src/key/keys.js';
import { closed, nextFrame, selfSignedCert, until } from './helpers.js';

const cert = selfSignedCert();

function listenNet(onSocket: (s: Socket) => void): Promise<NetServer> {
  return new Promise((resolve) => {
    const srv = createNetServer(onSocket);
    srv.listen(0, '127.0.0.1', () => resolve(srv));
  });
}
function portOf(srv: NetServer | HttpServer): number {
  const a = srv.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return a.port;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(err, 'expected a rejection').toBeDefined();
  expect(isMeshsockError(err, code as never), `${err?.message} (${(err as { code?: string }).code})`).toBe(true);
  return err!;
}

describe('DerpConn ↔ DerpServer on loopback', () => {
  let plain: DerpServer;
  let secure: DerpServer | undefined;
  beforeAll(async () => {
    plain = await DerpServer.listen({ host: '127.0.0.1', port: 0 });
    if (typeof cert !== 'string') secure = await DerpServer.listen({ host: '127.0.0.1', port: 0, tls: cert });
  });
  afterAll(async () => {
    await plain.close();
    await secure?.close();
  });

  const transports: { name: string; url: () => string; tls?: boolean; kind: string }[] = [
    { name: 'HTTP upgrade', url: () => plain.url, kind: 'tcp' },
    { name: 'WebSocket', url: () => plain.url.replace('http:', 'ws:'), kind: 'websocket' },
    { name: 'HTTPS upgrade', url: () => secure!.url, tls: true, kind: 'tls' },
    { name: 'secure WebSocket', url: () => secure!.url.replace('https:', 'wss:'), tls: true, kind: 'websocket' },
  ];

  for (const t of transports) {
    const run = t.tls && typeof cert === 'string' ? it.skip : it;
    const label = t.tls && typeof cert === 'string' ? `${t.name} (skipped: ${cert}; install openssl to run)` : t.name;
    run(`${label}: two clients log in and exchange packets both ways`, async () => {
      const tls = t.tls && typeof cert !== 'string' ? { ca: cert.cert } : undefined;
      const ka = PrivateKey.generate();
      const kb = PrivateKey.generate();
      const a = await DerpConn.connect({ url: t.url(), privateKey: ka, ...(tls ? { tls } : {}) });
      const b = await DerpConn.connect({ url: t.url(), privateKey: kb, ...(tls ? { tls } : {}) });
      try {
        const server = t.tls ? secure! : plain;
        expect(a.serverKey.equals(server.publicKey)).toBe(true);
        expect(a.serverInfo.version).toBe(DERP.PROTOCOL_VERSION);
        expect(a.transport).toBe(t.kind);
        expect(a.localAddress?.ip).toBe('127.0.0.1');
        expect(a.localAddress?.port).toBeGreaterThan(0);
        const atB = nextFrame(b, 'recvPacket');
        expect(a.sendPacket(kb.publicKey, new TextEncoder().encode('a→b'))).toBe(true);
        const f1 = await atB;
        expect(new PublicKey(f1.src).equals(ka.publicKey)).toBe(true);
        expect(new TextDecoder().decode(f1.packet)).toBe('a→b');
        const atA = nextFrame(a, 'recvPacket');
        b.sendPacket(ka.publicKey, new Uint8Array(DERP.MAX_PACKET_SIZE).fill(9));
        const f2 = await atA;
        expect(f2.packet.length).toBe(DERP.MAX_PACKET_SIZE);
        expect(f2.packet.every((x) => x === 9)).toBe(true);
      } finally {
        a.close();
        b.close();
      }
    });
  }

  it('answers its own Ping with the server Pong carrying the same bytes', async () => {
    const a = await DerpConn.connect({ url: plain.url, privateKey: PrivateKey.generate() });
    const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const pong = nextFrame(a, 'pong');
    a.ping(data);
    expect((await pong).data).toEqual(data);
    a.close();
  });

  it('refuses packets over 64 KiB and drops after close', async () => {
    const a = await DerpConn.connect({ url: plain.url, privateKey: PrivateKey.generate() });
    const dst = PrivateKey.generate().publicKey;
    let err: unknown;
    try {
      a.sendPacket(dst, new Uint8Array(DERP.MAX_PACKET_SIZE + 1));
    } catch (e) {
      err = e;
    }
    expect(isMeshsockError(err, ErrorCode.TOO_LARGE)).toBe(true);
    const done = closed(a);
    a.close();
    expect(a.closed).toBe(true);
    expect(await done).toBeUndefined();
    expect(a.sendPacket(dst, new Uint8Array(10))).toBe(false);
  });

  it('reports a server-side close as CLOSED', async () => {
    const srv = await DerpServer.listen({});
    const a = await DerpConn.connect({ url: srv.url, privateKey: PrivateKey.generate() });
    const done = closed(a);
    await srv.close();
    const err = await done;
    expect(isMeshsockError(err, ErrorCode.CLOSED)).toBe(true);
  });

  it('obeys the token bucket the server advertises in ServerInfo', async () => {
    const clock = new FakeClock();
    const srv = await DerpServer.listen({ rateLimit: { bytesPerSec: 1000, burst: 100_000 } });
    try {
      const a = await DerpConn.connect({ url: srv.url, privateKey: PrivateKey.generate(), clock });
      expect(a.serverInfo.tokenBucketBytesPerSecond).toBe(1000);
      expect(a.serverInfo.tokenBucketBytesBurst).toBe(100_000);
      const dst = PrivateKey.generate().publicKey;
      // 100,000 bytes of burst: frames of 5 + 32 + 1000 bytes → 96 pass, the 97th is dropped (no refill: fake clock).
      let sent = 0;
      while (a.sendPacket(dst, new Uint8Array(1000))) sent++;
      expect(sent).toBe(Math.floor(100_000 / 1037));
      expect(a.counters.dropRateLimited).toBe(1);
      clock.advance(1037); // 1,037 bytes of refill at 1,000 B/s
      expect(a.sendPacket(dst, new Uint8Array(1000))).toBe(true);
      a.close();
    } finally {
      await srv.close();
    }
  });

  it('declares the link dead after 120 s without a byte, counted from the last byte (fake clock)', async () => {
    const clock = new FakeClock();
    const a = await DerpConn.connect({ url: plain.url, privateKey: PrivateKey.generate(), clock });
    try {
      clock.advance(100_000);
      expect(a.closed).toBe(false);
      // A byte from the server at t = 100 s (the Pong) moves the deadline to t = 220 s.
      const pong = nextFrame(a, 'pong');
      a.ping(new Uint8Array(8));
      await pong;
      clock.advance(100_000);
      expect(a.closed).toBe(false);
      const done = closed(a);
      clock.advance(20_000);
      expect(isMeshsockError(await done, ErrorCode.TIMEOUT)).toBe(true);
    } finally {
      a.close();
    }
  });
});

describe('DerpConn handshake edge cases against scripted servers', () => {
  it('reads ServerKey from the same segment as the 101, and frames that follow ServerInfo in one write', async () => {
    const serverKey = PrivateKey.generate();
    const peer = PrivateKey.generate().publicKey;
    const gotPong: Uint8Array[] = [];
    const srv = await listenNet((sock) => {
      let head = Buffer.alloc(0);
      let upgraded = false;
      const reader = new FrameReader(DERP.MAX_CLIENT_INFO_LEN);
      sock.on('data', (c: Buffer) => {
        if (!upgraded) {
          head = Buffer.concat([head, c]);
          const end = head.indexOf('\r\n\r\n');
          if (end < 0) return;
          upgraded = true;
          sock.write(upgradeResponse(serverKey.publicKey)); // 101 + ServerKey in one write
          c = head.subarray(end + 4);
        }
        reader.push(c);
        for (let f = reader.next(); f; f = reader.next()) {
          if (f.type === 'clientInfo') {
            const client = new PublicKey(f.key);
            openFrom(serverKey, client, f.sealed);
            const info = encodeFrame({
              type: 'serverInfo',
              sealed: sealTo(serverKey, client, new TextEncoder().encode('{"version":2}')),
            });
            const pkt = encodeFrame({ type: 'recvPacket', src: peer.bytes, packet: new Uint8Array([42]) });
            const ping = encodeFrame({ type: 'ping', data: new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]) });
            sock.write(Buffer.concat([info, pkt, ping])); // ServerInfo and two more frames in one segment
          } else if (f.type === 'pong') gotPong.push(Uint8Array.from(f.data));
        }
      });
    });
    try {
      const conn = await DerpConn.connect({
        url: `http://127.0.0.1:${portOf(srv)}/derp`,
        privateKey: PrivateKey.generate(),
      });
      const f = await nextFrame(conn, 'recvPacket');
      expect(new PublicKey(f.src).equals(peer)).toBe(true);
      expect([...f.packet]).toEqual([42]);
      await until(() => gotPong.length === 1, 'auto Pong');
      expect([...gotPong[0]!]).toEqual([9, 9, 9, 9, 9, 9, 9, 9]);
      conn.close();
    } finally {
      srv.close();
    }
  });

  it('rejects with DERP_CONNECT when nothing listens, or the server answers without upgrading', async () => {
    const dead = await listenNet(() => {});
    const port = portOf(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    await expectCode(
      DerpConn.connect({ url: `http://127.0.0.1:${port}/derp`, privateKey: PrivateKey.generate() }),
      ErrorCode.DERP_CONNECT,
    );

    const http = createHttpServer((_req, res) => {
      res.writeHead(426);
      res.end('DERP requires connection upgrade');
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    try {
      const err = await expectCode(
        DerpConn.connect({ url: `http://127.0.0.1:${portOf(http)}/derp`, privateKey: PrivateKey.generate() }),
        ErrorCode.DERP_CONNECT,
      );
      expect(err.message).toContain('426');
      await expectCode(
        DerpConn.connect({ url: `ws://127.0.0.1:${portOf(http)}/derp`, privateKey: PrivateKey.generate() }),
        ErrorCode.DERP_CONNECT,
      );
    } finally {
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
    }
  });

  it('rejects with DERP_CONNECT when the peer is not a DERP server after the 101', async () => {
    const srv = await listenNet((sock) => {
      sock.once('data', () =>
        sock.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\nhello world, not a frame',
        ),
      );
    });
    try {
      await expectCode(
        DerpConn.connect({ url: `http://127.0.0.1:${portOf(srv)}/derp`, privateKey: PrivateKey.generate() }),
        ErrorCode.DERP_CONNECT,
      );
    } finally {
      srv.close();
    }
  });

  it('times out at its deadline against a server that never answers (fake clock)', async () => {
    const clock = new FakeClock();
    const sockets: Socket[] = [];
    const srv = await listenNet((s) => sockets.push(s));
    try {
      const p = DerpConn.connect({
        url: `http://127.0.0.1:${portOf(srv)}/derp`,
        privateKey: PrivateKey.generate(),
        clock,
        timeoutMs: 3_000,
      });
      await until(() => sockets.length === 1, 'TCP accept');
      clock.advance(2_999);
      clock.advance(1);
      await expectCode(p, ErrorCode.TIMEOUT);
    } finally {
      for (const s of sockets) s.destroy();
      srv.close();
    }
  });

  it('aborts with ABORTED, whether the signal fired before or during the connect', async () => {
    const sockets: Socket[] = [];
    const srv = await listenNet((s) => sockets.push(s));
    try {
      const url = `http://127.0.0.1:${portOf(srv)}/derp`;
      await expectCode(
        DerpConn.connect({ url, privateKey: PrivateKey.generate(), signal: AbortSignal.abort() }),
        ErrorCode.ABORTED,
      );
      const ctl = new AbortController();
      const p = DerpConn.connect({ url, privateKey: PrivateKey.generate(), signal: ctl.signal });
      await until(() => sockets.length === 1, 'TCP accept');
      ctl.abort();
      await expectCode(p, ErrorCode.ABORTED);
    } finally {
      for (const s of sockets) s.destroy();
      srv.close();
    }
  });

  it('rejects bad options with TypeError', async () => {
    await expect(DerpConn.connect({ url: 'ftp://x/derp', privateKey: PrivateKey.generate() })).rejects.toThrow(
      TypeError,
    );
    await expect(DerpConn.connect({ url: 'http://127.0.0.1:1/derp', privateKey: 'k' as never })).rejects.toThrow(
      TypeError,
    );
    await expect(
      DerpConn.connect({ url: 'http://127.0.0.1:1/derp', privateKey: PrivateKey.generate(), meshKey: 'short' }),
    ).rejects.toThrow(TypeError);
  });

  it('rejects with DERP_DENIED when the admission hook refuses', async () => {
    const srv = await DerpServer.listen({ verifyClient: () => false });
    try {
      await expectCode(DerpConn.connect({ url: srv.url, privateKey: PrivateKey.generate() }), ErrorCode.DERP_DENIED);
      await expectCode(
        DerpConn.connect({ url: srv.url.replace('http:', 'ws:'), privateKey: PrivateKey.generate() }),
        ErrorCode.DERP_DENIED,
      );
    } finally {
      await srv.close();
    }
  });
});
