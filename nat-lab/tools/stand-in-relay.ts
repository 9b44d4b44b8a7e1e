/**
 * Stand-in relay for the matrix harness: plays the part of the DERP server until meshsock's own is plugged in.
 * NOT the DERP protocol: one JSON object per line over plain TCP.
 *
 *   client → relay  {"type":"hello","key":"<64 hex public key>"}    register (a newer connection replaces older)
 *   client → relay  {"type":"send","to":"<hex>","msg":<any JSON>}   forward to that key, if connected
 *   relay → client  {"type":"recv","from":"<hex>","msg":<any JSON>}
 *
 * Usage: stand-in-relay --listen IP:PORT. Prints {"event":"ready","listen"} once listening, and
 * {"event":"stats","forwarded","dropped","clients"} on SIGTERM/SIGINT.
 */
import { createServer, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { parseEndpoint } from './stun-wire.js';

const { values } = parseArgs({ options: { listen: { type: 'string' } }, strict: true });
const listen = values.listen === undefined ? undefined : parseEndpoint(values.listen);
if (!listen) {
  process.stdout.write(`${JSON.stringify({ event: 'error', message: '--listen IP:PORT is required' })}\n`);
  process.exit(2);
}

const clients = new Map<string, Socket>();
let forwarded = 0;
let dropped = 0;
let seen = 0;

const server = createServer((sock) => {
  seen++;
  let key: string | undefined;
  sock.setNoDelay(true);
  sock.on('error', () => undefined);
  sock.on('close', () => {
    if (key !== undefined && clients.get(key) === sock) clients.delete(key);
  });
  createInterface({ input: sock }).on('line', (line) => {
    let m: { type?: unknown; key?: unknown; to?: unknown; msg?: unknown };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      dropped++;
      return;
    }
    if (m.type === 'hello' && typeof m.key === 'string' && /^[0-9a-f]{64}$/.test(m.key)) {
      key = m.key;
      clients.get(key)?.destroy();
      clients.set(key, sock);
    } else if (m.type === 'send' && key !== undefined && typeof m.to === 'string') {
      const dst = clients.get(m.to);
      if (dst) {
        dst.write(`${JSON.stringify({ type: 'recv', from: key, msg: m.msg })}\n`);
        forwarded++;
      } else dropped++;
    } else dropped++;
  });
});

server.listen(listen.port, listen.ip, () => {
  process.stdout.write(`${JSON.stringify({ event: 'ready', listen: `${listen.ip}:${listen.port}` })}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    process.stdout.write(`${JSON.stringify({ event: 'stats', forwarded, dropped, clients: seen })}\n`);
    process.exit(0);
  });
}
