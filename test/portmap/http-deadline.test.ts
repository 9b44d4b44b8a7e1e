/**
 * A hostile UPnP gateway that answers, then dribbles its body one byte at a time — never silent long enough for an
 * idle timeout (issue 12, item 10). Real TCP on loopback: the test is the gateway and watches its own end of the
 * connection. The request must end at its deadline and the connection must be closed, not left open.
 */
import { once } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { httpRequest } from '../../src/portmap/http.js';

let server: Server | undefined;
const timers: NodeJS.Timeout[] = [];
afterEach(async () => {
  for (const t of timers.splice(0)) clearInterval(t);
  if (server) {
    server.close();
    await once(server, 'close').catch(() => undefined);
    server = undefined;
  }
});

describe('UPnP HTTP request deadline', () => {
  it('a gateway dribbling one byte every 100 ms is cut off at the 400 ms deadline and its connection closed', async () => {
    const conns: Socket[] = [];
    const closedAt: number[] = [];
    let bytesSent = 0;
    server = createServer((sock) => {
      conns.push(sock);
      sock.on('close', () => closedAt.push(performance.now()));
      sock.on('error', () => undefined);
      sock.once('data', () => {
        sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n');
        const t = setInterval(() => {
          if (sock.destroyed || !sock.writable) return clearInterval(t);
          sock.write('<');
          bytesSent++;
        }, 100);
        timers.push(t);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;

    const t0 = performance.now();
    const res = await httpRequest({
      method: 'GET',
      url: `http://127.0.0.1:${port}/rootDesc.xml`,
      headers: {},
      body: undefined,
      timeoutMs: 400,
      maxBytes: 64 * 1024,
    });
    expect(res).toEqual({ ok: false, error: 'no answer within 400 ms' });
    expect(bytesSent).toBeGreaterThan(0); // the gateway was dribbling, not silent
    // The gateway sees its connection closed (it is not left open after the step failed).
    const end = performance.now() + 3_000;
    while (closedAt.length === 0 && performance.now() < end) await new Promise((r) => setTimeout(r, 20));
    expect(conns).toHaveLength(1);
    expect(closedAt).toHaveLength(1);
    expect(closedAt[0]! - t0).toBeGreaterThanOrEqual(350);
  });
});
