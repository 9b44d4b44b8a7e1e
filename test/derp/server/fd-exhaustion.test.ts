/**
 * A client trying to exhaust the DERP server's file descriptors (issue 12, item 3), over real loopback TCP: silent
 * connections, garbage followed by a half-open socket that never closes, an upgrade that never sends ClientInfo,
 * and more connections than the cap. The handshake timeout is shortened through the option, so nothing sleeps long.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpServer } from '../../../src/derp/server/index.js';

let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

const TIMEOUT = 300;

async function server(maxConnections = 100): Promise<DerpServer> {
  const s = await DerpServer.listen({ handshakeTimeoutMs: TIMEOUT, maxConnections });
  cleanup.push(() => s.close());
  return s;
}

/** A TCP client that keeps its own side open whatever the server does (allowHalfOpen), and notes when it closed. */
async function tcp(s: DerpServer): Promise<{ sock: Socket; closed: () => boolean; ended: () => boolean }> {
  const sock = connect({ host: '127.0.0.1', port: s.address.port, allowHalfOpen: true });
  let closed = false;
  let ended = false;
  sock.on('close', () => (closed = true));
  sock.on('end', () => (ended = true));
  sock.on('error', () => undefined);
  sock.on('data', () => undefined);
  cleanup.push(() => sock.destroy());
  await once(sock, 'connect');
  return { sock, closed: () => closed, ended: () => ended };
}

/**
 * Waits up to `ms` for the connection to be closed. Once the server has sent its FIN, the client (which keeps its
 * own side open) writes a byte now and then: a server that destroyed its socket answers with a reset, and the
 * client's socket closes; a server that only half-closed takes the bytes and the connection stays.
 */
async function closedWithin(
  c: { sock: Socket; closed: () => boolean; ended: () => boolean },
  ms: number,
): Promise<boolean> {
  const end = performance.now() + ms;
  while (!c.closed() && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    if (c.ended() && !c.sock.destroyed && c.sock.writable) c.sock.write('x');
  }
  return c.closed();
}

describe('DERP server: no connection holds a file descriptor forever', () => {
  it('a connection that never sends a byte is destroyed after the handshake timeout', async () => {
    const s = await server();
    const c = await tcp(s);
    expect(await closedWithin(c, 3_000)).toBe(true);
    expect(s.stats().counters.preUpgradeTimeouts).toBe(1);
    expect(s.stats().connections).toBe(0);
  });

  it('garbage, then a client that keeps its side open: the server destroys its end (clientError)', async () => {
    const s = await server();
    const c = await tcp(s);
    c.sock.write('GARBAGE NOT HTTP\r\n\r\n');
    // The 400 arrives with the server's FIN; the client never closes its side and sends nothing more. The server's
    // socket must be gone anyway (an end() alone would keep it, half-open, for as long as the client likes).
    const t0 = performance.now();
    while (!c.ended() && performance.now() - t0 < 3_000) await new Promise((r) => setTimeout(r, 20));
    expect(c.ended()).toBe(true);
    const sockets = (s as unknown as { sockets: Set<Socket> }).sockets;
    while (sockets.size > 0 && performance.now() - t0 < 3_000) await new Promise((r) => setTimeout(r, 20));
    expect(sockets.size).toBe(0);
    expect(await s.metrics.metrics()).toMatch(/^derp_tcp_connections 0$/m);
    expect(s.stats().counters.httpBadRequests).toBe(1);
  });

  it('an upgrade that never sends ClientInfo is destroyed after the handshake timeout', async () => {
    const s = await server();
    const c = await tcp(s);
    c.sock.write('GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50)); // upgraded: from here only the relay's deadline applies
    expect(await closedWithin(c, 3_000)).toBe(true);
    expect(s.stats().counters.handshakeTimeouts).toBe(1);
  });

  it('past maxConnections a new connection is destroyed at accept and counted, also in /metrics', async () => {
    const s = await server(5);
    const held = [];
    for (let i = 0; i < 5; i++) held.push(await tcp(s));
    await new Promise((r) => setTimeout(r, 50)); // let the server see all five
    const extra = await tcp(s);
    expect(await closedWithin(extra, 1_000)).toBe(true);
    expect(held.some((h) => h.closed())).toBe(false);
    expect(s.stats().counters.connectionCapRefused).toBe(1);
    const text = await s.metrics.metrics();
    expect(text).toMatch(/^derp_connection_cap_refused_total 1$/m);
    expect(text).toMatch(/^derp_tcp_connections 5$/m);
    // The five silent ones are reaped in turn; then the server takes connections again.
    for (const h of held) expect(await closedWithin(h, 3_000)).toBe(true);
    expect(s.stats().counters.preUpgradeTimeouts).toBe(5);
    const res = await fetch(`http://127.0.0.1:${s.address.port}/health`);
    expect(res.status).toBe(200);
  });
});
