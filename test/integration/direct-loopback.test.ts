import { afterEach, describe, expect, it } from 'vitest';
import { PrivateKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import { MemorySignalHub } from '../../src/signal/memory.js';
import { StunServer } from '../../src/stun/server.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function pair() {
  const stun = await StunServer.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => stun.close());
  const hub = new MemorySignalHub();
  const stunAddr = `127.0.0.1:${stun.address.port}`;
  const mk = () =>
    MagicSocket.create({
      privateKey: PrivateKey.generate(),
      bindAddress: '127.0.0.1',
      stunServers: [stunAddr],
      signaller: hub.signaller(),
    });
  const a = await mk();
  const b = await mk();
  closers.push(
    () => a.close(),
    () => b.close(),
  );
  return { a, b, hub };
}

describe('MagicSocket on loopback', () => {
  it('finds a direct path through the signaller and exchanges datagrams', async () => {
    const { a, b } = await pair();
    a.addPeer(b.publicKey);
    b.addPeer(a.publicKey);
    const [pa, pb] = await Promise.all([
      a.waitForPath(b.publicKey, { timeoutMs: 5000 }),
      b.waitForPath(a.publicKey, { timeoutMs: 5000 }),
    ]);
    expect(pa.type).toBe('direct');
    expect(pb.type).toBe('direct');
    const got = new Promise<string>((resolve) =>
      b.once('message', (d, from) => resolve(`${from.hex === a.publicKey.hex}:${Buffer.from(d).toString()}`)),
    );
    a.send(b.publicKey, Buffer.from('hello'));
    expect(await got).toBe('true:hello');
    const st = a.status();
    expect(st.peers[0]!.notDirectReason).toBeUndefined();
    expect(st.peers[0]!.path.type).toBe('direct');
  });
});
