import { afterEach, describe, expect, it } from 'vitest';
import { DerpServer } from '../../src/derp/server/index.js';
import { PrivateKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import type { PathInfo } from '../../src/magicsock/peer-state.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function derpWorld() {
  const server = await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 });
  closers.push(() => server.close());
  const url = new URL(server.url);
  const derpMap = {
    regions: [
      {
        regionId: 900,
        regionCode: 'lo',
        regionName: 'Loopback',
        nodes: [
          {
            name: '900a',
            hostName: '127.0.0.1',
            ipv4: '127.0.0.1',
            derpPort: Number(url.port),
            stunPort: server.stunAddress!.port,
            insecureForTests: true,
          },
        ],
      },
    ],
  };
  const mk = async () => {
    const s = await MagicSocket.create({ privateKey: PrivateKey.generate(), bindAddress: '127.0.0.1', derpMap });
    closers.push(() => s.close());
    return s;
  };
  return { server, a: await mk(), b: await mk() };
}

describe('MagicSocket with a local DERP server', () => {
  it('reaches a peer through DERP before any direct path, with CallMeMaybe over DERP, then goes direct', async () => {
    const { a, b } = await derpWorld();
    // Wait for the home region to be connected on both sides.
    a.addPeer(b.publicKey);
    b.addPeer(a.publicKey);
    const pathsSeenByB: PathInfo['type'][] = [];
    const got = new Promise<void>((resolve) =>
      b.on('message', (d, _from, path) => {
        pathsSeenByB.push(path.type);
        if (Buffer.from(d).toString() === 'last') resolve();
      }),
    );
    // The first datagram goes out before discovery could have finished: it is queued or relayed, never lost.
    a.send(b.publicKey, Buffer.from('first'));
    const direct = await a.waitForPath(b.publicKey, { type: 'direct', timeoutMs: 10_000 });
    expect(direct.type).toBe('direct');
    a.send(b.publicKey, Buffer.from('last'));
    await got;
    expect(pathsSeenByB.length).toBeGreaterThanOrEqual(2);
    expect(pathsSeenByB.at(-1)).toBe('direct');
    const st = a.status();
    expect((st.relay as { home?: number }).home).toBe(900);
    expect(st.counters['signal-sent']).toBeGreaterThan(0);
  });

  it('delivers over DERP when the peer is only reachable there (no candidates: status says why)', async () => {
    const { a, b } = await derpWorld();
    a.addPeer(b.publicKey);
    b.addPeer(a.publicKey);
    await a.waitForPath(b.publicKey, { type: 'any', timeoutMs: 10_000 });
    const st = a.status().peers[0]!;
    expect(['derp', 'direct']).toContain(st.path.type);
  });
});
