/**
 * hello-p2p — the smallest meshsock application: two peers on this machine find a direct UDP path to each other
 * and exchange messages, printing the path each datagram used. Needs no root and no outside host: a local STUN
 * server stands in for a public one and an in-process signaller carries the CallMeMaybe messages.
 *
 *   npm run demo            (or: node dist/examples/hello-p2p/main.js [--count N])
 */
import { parseArgs } from 'node:util';
import { MagicSocket, MemorySignalHub, PrivateKey, StunServer, type PathInfo, type PublicKey } from '../../src/index.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '3' }, help: { type: 'boolean' } } });
if (values.help) {
  process.stdout.write('usage: hello-p2p [--count N]\n  Two local peers find a direct path and exchange N messages each way.\n');
  process.exit(0);
}
const count = Number(values.count);
if (!Number.isInteger(count) || count < 1 || count > 1000) {
  process.stderr.write('hello-p2p: --count must be an integer between 1 and 1000\n');
  process.exit(2);
}

const t0 = performance.now();
const stamp = () => `[${(performance.now() - t0).toFixed(1).padStart(7)} ms]`;
const show = (p: PathInfo) => (p.type === 'direct' ? `direct ${p.addr}` : p.type === 'derp' ? `DERP region ${p.region}` : 'no path');

const stun = await StunServer.listen({ host: '127.0.0.1', port: 0 });
const hub = new MemorySignalHub();
const make = () =>
  MagicSocket.create({
    privateKey: PrivateKey.generate(),
    bindAddress: '127.0.0.1',
    stunServers: [`127.0.0.1:${stun.address.port}`],
    signaller: hub.signaller(),
  });
const alice = await make();
const bob = await make();
const names = new Map<string, string>([
  [alice.publicKey.hex, 'alice'],
  [bob.publicKey.hex, 'bob'],
]);
const name = (k: PublicKey) => names.get(k.hex) ?? k.short();

console.log('meshsock hello-p2p: two peers on this machine');
console.log(`  STUN server  127.0.0.1:${stun.address.port} (local)`);
for (const [n, s] of [['alice', alice], ['bob  ', bob]] as const)
  console.log(`  ${n}        ${s.publicKey.toString().slice(0, 24)}…  udp ${s.status().localAddresses.join(', ')}`);

for (const [self, s] of [['alice', alice], ['bob', bob]] as const) {
  s.on('path', (peer, path, prev, reason) => console.log(`${stamp()} ${self} → ${name(peer)}: ${show(prev)} ⇒ ${show(path)} (${reason})`));
}

let received = 0;
const done = new Promise<void>((resolve) => {
  for (const [self, s] of [['alice', alice], ['bob', bob]] as const) {
    s.on('message', (data, from, path) => {
      console.log(`${stamp()} ${self} got "${Buffer.from(data).toString()}" from ${name(from)} via ${show(path)}`);
      if (++received === 2 * count) resolve();
    });
  }
});

alice.addPeer(bob.publicKey);
bob.addPeer(alice.publicKey);
await Promise.all([alice.waitForPath(bob.publicKey, { timeoutMs: 10_000 }), bob.waitForPath(alice.publicKey, { timeoutMs: 10_000 })]);

for (let i = 1; i <= count; i++) {
  alice.send(bob.publicKey, Buffer.from(`hello bob, this is alice #${i}`));
  bob.send(alice.publicKey, Buffer.from(`hi alice, bob here #${i}`));
}
await done;

const st = alice.status().peers[0]!;
console.log(`${stamp()} alice's view of bob: path ${show(st.path)}, trusted=${st.trusted}, ` +
  `candidates ${st.candidates.map((c) => `${c.addr}${c.latencyMs !== undefined ? ` (${c.latencyMs.toFixed(2)} ms)` : ''}`).join(', ')}`);
await Promise.all([alice.close(), bob.close(), stun.close()]);
console.log('done.');
