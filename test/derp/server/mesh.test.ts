import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../src/derp/conn.js';
import { PeerGoneReason } from '../../../src/derp/constants.js';
import { DerpServer, type DerpServerOptions } from '../../../src/derp/server/index.js';
import { PrivateKey, PublicKey } from '../../../src/key/keys.js';
import { closed, nextFrame, until } from '../helpers.js';

const MESH = '5e'.repeat(32);
let cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function node(opts: DerpServerOptions): Promise<DerpServer> {
  const s = await DerpServer.listen({ meshKey: MESH, meshRetryMs: 100, ...opts });
  cleanup.push(() => s.close());
  return s;
}
async function conn(url: string, key: PrivateKey): Promise<DerpConn> {
  const c = await DerpConn.connect({ url, privateKey: key });
  cleanup.push(() => c.close());
  return c;
}

/** Sends until one packet gets through (a forwarder appears asynchronously after PeerPresent). */
async function deliver(from: DerpConn, to: DerpConn, toKey: PublicKey, fromKey: PublicKey): Promise<void> {
  const got = nextFrame(to, 'recvPacket', (f) => new PublicKey(f.src).equals(fromKey));
  let done = false;
  void got.then(
    () => (done = true),
    () => undefined,
  );
  await until(() => {
    if (!done) from.sendPacket(toKey, new Uint8Array([1, 2, 3]));
    return done;
  }, 'delivery across the mesh');
  expect([...(await got).packet]).toEqual([1, 2, 3]);
}

describe('DERP mesh (two nodes of one region)', () => {
  it('relays between clients of different nodes, and recovers after one node restarts', async () => {
    const [portA, portB] = [await freePort(), await freePort()];
    const urlA = `http://127.0.0.1:${portA}/derp`;
    const urlB = `http://127.0.0.1:${portB}/derp`;
    const keyB = PrivateKey.generate();
    const a = await node({ port: portA, meshWith: [urlB] });
    let b = await node({ port: portB, privateKey: keyB, meshWith: [urlA] });
    await until(() => a.stats().meshLinksUp === 1 && b.stats().meshLinksUp === 1, 'mesh links up');
    expect(a.stats().meshPeers).toBe(1); // b's link, holding the mesh key
    expect(a.stats().watchers).toBe(1);

    const ka = PrivateKey.generate();
    const kb = PrivateKey.generate();
    const ca = await conn(urlA, ka);
    let cb = await conn(urlB, kb);
    await deliver(ca, cb, kb.publicKey, ka.publicKey);
    await deliver(cb, ca, ka.publicKey, kb.publicKey);
    expect(a.stats().counters.packetsForwardedOut).toBeGreaterThanOrEqual(1);
    expect(b.stats().counters.packetsForwardedIn).toBeGreaterThanOrEqual(1);
    // Mesh peers' own links get no forwarder: only the two clients are forwarded.
    expect(a.stats().forwarders).toBe(1);
    expect(b.stats().forwarders).toBe(1);

    // B goes away: ca hears that cb left the region (it had sent to cb), and cb's connection ends.
    const goneAtA = nextFrame(ca, 'peerGone', (f) => new PublicKey(f.key).equals(kb.publicKey));
    const cbClosed = closed(cb);
    await b.close();
    expect((await goneAtA).reason).toBe(PeerGoneReason.DISCONNECTED);
    await cbClosed;
    await until(() => a.stats().meshLinksUp === 0 && a.stats().forwarders === 0, 'A notices B is gone');

    // B restarts on the same port with the same key; cb reconnects by hand; traffic flows again both ways.
    b = await node({ port: portB, privateKey: keyB, meshWith: [urlA] });
    cb = await conn(urlB, kb);
    await until(() => a.stats().meshLinksUp === 1 && b.stats().meshLinksUp === 1, 'mesh links back up');
    await deliver(ca, cb, kb.publicKey, ka.publicKey);
    await deliver(cb, ca, ka.publicKey, kb.publicKey);
    expect(a.stats().counters.meshDisconnects).toBeGreaterThanOrEqual(1);
    expect(a.stats().counters.meshConnects).toBeGreaterThanOrEqual(2);
  });

  it('forwards one hop only: a ForwardPacket for a key that is not local is dropped', async () => {
    const s = await node({});
    const m = await DerpConn.connect({ url: s.url, privateKey: PrivateKey.generate(), meshKey: MESH });
    cleanup.push(() => m.close());
    m.forwardPacket(PrivateKey.generate().publicKey, PrivateKey.generate().publicKey, new Uint8Array([1]));
    await until(() => s.stats().counters.dropUnknownDest === 1, 'drop counted');
    expect(s.stats().counters.packetsForwardedOut).toBe(0);
  });

  it('a node listed in its own meshWith ignores itself', async () => {
    const port = await freePort();
    const s = await node({ port, meshWith: [`http://127.0.0.1:${port}/derp`] });
    await until(() => s.stats().counters.accepts >= 1, 'self dial');
    await until(() => s.stats().connections === 0, 'self link closed');
    expect(s.stats().meshLinksUp).toBe(0);
  });
});
