/**
 * First-datagram latency of a new peer through DERP: two MagicSockets already connected to their home DERP server
 * (one process, loopback); each round adds a brand-new peer pair and times `send` → `'message'` for the very first
 * datagram, with no discovery done yet. The baseline, measured in the same run, is the same server's DERP round
 * trip (Ping → Pong over a DerpConn) and a one-way SendPacket → RecvPacket between two bare DerpConns.
 * Target: the first datagram costs one relay trip — no waiting for discovery.
 *
 *   npx tsx bench/first-datagram.ts [rounds=30]
 */
import { DerpConn } from '../src/derp/conn.js';
import { DerpServer } from '../src/derp/server/index.js';
import { PrivateKey } from '../src/key/keys.js';
import { MagicSocket } from '../src/magicsock/magic-socket.js';

const rounds = Number(process.argv[2] ?? 30);
const server = await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 });
const port = Number(new URL(server.url).port);
const derpMap = {
  regions: [
    {
      regionId: 900,
      regionCode: 'lo',
      nodes: [
        {
          name: '900a',
          hostName: '127.0.0.1',
          ipv4: '127.0.0.1',
          derpPort: port,
          stunPort: server.stunAddress!.port,
          insecureForTests: true,
        },
      ],
    },
  ],
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]!;

// Baselines: DERP ping round trip and one-way packet between two bare connections.
const k2 = PrivateKey.generate();
const c1 = await DerpConn.connect({ url: server.url, privateKey: PrivateKey.generate() });
const c2 = await DerpConn.connect({ url: server.url, privateKey: k2 });
const rtts: number[] = [];
const oneWay: number[] = [];
for (let i = 0; i < rounds; i++) {
  const data = new Uint8Array(8).fill(i);
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const on = (f: { type: string }) => {
      if (f.type === 'pong') {
        c1.off('frame', on);
        resolve();
      }
    };
    c1.on('frame', on);
    c1.ping(data);
  });
  rtts.push(performance.now() - t0);
  const t1 = performance.now();
  await new Promise<void>((resolve) => {
    const on = (f: { type: string }) => {
      if (f.type === 'recvPacket') {
        c2.off('frame', on);
        resolve();
      }
    };
    c2.on('frame', on);
    c1.sendPacket(k2.publicKey, new Uint8Array(64));
  });
  oneWay.push(performance.now() - t1);
}
c1.close();
c2.close();

// Measurement: a new peer pair each round, both sockets already on DERP.
const first: number[] = [];
const firstPaths: Record<string, number> = {};
for (let i = 0; i < rounds; i++) {
  const a = await MagicSocket.create({ privateKey: PrivateKey.generate(), bindAddress: '127.0.0.1', derpMap });
  const b = await MagicSocket.create({ privateKey: PrivateKey.generate(), bindAddress: '127.0.0.1', derpMap });
  // Wait until both have their home region connected (what a long-running node has).
  const ready = (s: MagicSocket) =>
    new Promise<void>((resolve) => {
      const check = () =>
        (s.status().relay as { regions?: Array<{ state: string }> }).regions?.some((r) => r.state === 'connected')
          ? resolve()
          : setTimeout(check, 5);
      check();
    });
  await Promise.all([ready(a), ready(b)]);
  b.addPeer(a.publicKey);
  const got = new Promise<string>((resolve) => b.once('message', (_d, _k, path) => resolve(path.type)));
  const t0 = performance.now();
  a.addPeer(b.publicKey);
  a.send(b.publicKey, new Uint8Array(64));
  const path = await got;
  first.push(performance.now() - t0);
  firstPaths[path] = (firstPaths[path] ?? 0) + 1;
  await Promise.all([a.close(), b.close()]);
}
await server.close();

const f = (x: number) => `${x.toFixed(3)} ms`;
console.log(`first-datagram latency of a new peer (${rounds} rounds, loopback, DERP home already connected)`);
console.log(`  baseline  DERP ping round trip:        p50 ${f(median(rtts))}  p90 ${f(p90(rtts))}`);
console.log(`  baseline  DERP one-way packet:          p50 ${f(median(oneWay))}  p90 ${f(p90(oneWay))}`);
console.log(
  `  meshsock  addPeer+send → 'message':    p50 ${f(median(first))}  p90 ${f(p90(first))}  (first datagram via ${JSON.stringify(firstPaths)})`,
);
console.log(
  `  ratio     first datagram / DERP round trip: ${(median(first) / median(rtts)).toFixed(2)}× (target ≤ 1×: one relay trip, no waiting for discovery)`,
);
