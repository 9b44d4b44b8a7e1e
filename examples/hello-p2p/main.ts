/**
 * hello-p2p — the smallest meshsock application: two peers on this machine reach each other through a DERP relay
 * at once, find a direct UDP path in the background, and move to it; every datagram prints the path it used.
 * Needs no root and no outside host: a local DERP server (with its STUN server) stands in for your own servers,
 * and CallMeMaybe travels over DERP. `--no-derp` runs with an in-process signaller and STUN only.
 *
 *   npm run demo            (or: node dist/examples/hello-p2p/main.js [--count N])
 */
import { parseArgs } from 'node:util';
import {
  DerpServer,
  MagicSocket,
  MemorySignalHub,
  PrivateKey,
  StunServer,
  type PathInfo,
  type PublicKey,
} from '../../src/index.js';

const { values } = parseArgs({
  options: { count: { type: 'string', default: '3' }, 'no-derp': { type: 'boolean' }, help: { type: 'boolean' } },
});
if (values.help) {
  process.stdout.write(
    'usage: hello-p2p [--count N] [--no-derp]\n  Two local peers reach each other over DERP, move to a direct path, and exchange N messages each way.\n',
  );
  process.exit(0);
}
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 1000) {
  process.stderr.write('hello-p2p: --count must be an integer between 1 and 1000\n');
  process.exit(2);
}

const t0 = performance.now();
const stamp = () => `[${(performance.now() - t0).toFixed(1).padStart(7)} ms]`;
const show = (p: PathInfo) =>
  p.type === 'direct' ? `direct ${p.addr}` : p.type === 'derp' ? `DERP region ${p.region}` : 'no path';

const useDerp = !values['no-derp'];
const derp = useDerp ? await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 }) : undefined;
const stun = derp ? undefined : await StunServer.listen({ host: '127.0.0.1', port: 0 });
const hub = new MemorySignalHub();
const derpMap = derp && {
  regions: [
    {
      regionId: 900,
      regionCode: 'local',
      regionName: 'this machine',
      nodes: [
        {
          name: '900a',
          hostName: '127.0.0.1',
          ipv4: '127.0.0.1',
          derpPort: derp.address.port,
          stunPort: derp.stunAddress!.port,
          insecureForTests: true,
        },
      ],
    },
  ],
};
const make = () =>
  MagicSocket.create({
    privateKey: PrivateKey.generate(),
    bindAddress: '127.0.0.1',
    ...(derpMap ? { derpMap } : { stunServers: [`127.0.0.1:${stun!.address.port}`], signaller: hub.signaller() }),
  });
const alice = await make();
const bob = await make();
const names = new Map<string, string>([
  [alice.publicKey.hex, 'alice'],
  [bob.publicKey.hex, 'bob'],
]);
const name = (k: PublicKey) => names.get(k.hex) ?? k.short();

console.log('meshsock hello-p2p: two peers on this machine');
if (derp) console.log(`  DERP server  ${derp.url} (local, region 900), STUN 127.0.0.1:${derp.stunAddress!.port}`);
else console.log(`  STUN server  127.0.0.1:${stun!.address.port} (local), in-process signaller`);
for (const [n, s] of [
  ['alice', alice],
  ['bob  ', bob],
] as const)
  console.log(`  ${n}        ${s.publicKey.toString().slice(0, 24)}…  udp ${s.status().localAddresses.join(', ')}`);

for (const [self, s] of [
  ['alice', alice],
  ['bob', bob],
] as const) {
  s.on('path', (peer, path, prev, reason) =>
    console.log(`${stamp()} ${self} → ${name(peer)}: ${show(prev)} ⇒ ${show(path)} (${reason})`),
  );
}

let received = 0;
const done = new Promise<void>((resolve) => {
  for (const [self, s] of [
    ['alice', alice],
    ['bob', bob],
  ] as const) {
    s.on('message', (data, from, path) => {
      console.log(`${stamp()} ${self} got "${Buffer.from(data).toString()}" from ${name(from)} via ${show(path)}`);
      if (++received === 2 * (count + 1)) resolve();
    });
  }
});

alice.addPeer(bob.publicKey);
bob.addPeer(alice.publicKey);
// Send at once: with DERP the first datagrams are relayed while the direct path is being found.
alice.send(bob.publicKey, Buffer.from('hello bob (sent before any path was known)'));
bob.send(alice.publicKey, Buffer.from('hi alice (sent before any path was known)'));
await Promise.all([
  alice.waitForPath(bob.publicKey, { timeoutMs: 10_000 }),
  bob.waitForPath(alice.publicKey, { timeoutMs: 10_000 }),
]);
for (let i = 1; i <= count; i++) {
  alice.send(bob.publicKey, Buffer.from(`hello bob, this is alice #${i}`));
  bob.send(alice.publicKey, Buffer.from(`hi alice, bob here #${i}`));
}
await done;

const st = alice.status().peers[0]!;
console.log(
  `${stamp()} alice's view of bob: path ${show(st.path)}, trusted=${st.trusted}, ` +
    `candidates ${st.candidates.map((c) => `${c.addr}${c.latencyMs !== undefined ? ` (${c.latencyMs.toFixed(2)} ms)` : ''}`).join(', ')}`,
);
await Promise.all([alice.close(), bob.close(), stun?.close(), derp?.close()]);
console.log('done.');
