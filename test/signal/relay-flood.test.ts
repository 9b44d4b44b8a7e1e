/**
 * SignalRelayServer under a flood (issue 12, item 4), over real loopback WebSockets: a sender pushing far more than
 * any honest socket would, towards a receiver that never reads. The relay's queue for the receiver stays bounded,
 * the drops are counted, and a well-behaved pair on the same relay keeps talking.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { PrivateKey } from '../../src/key/keys.js';
import { SignalRelayServer, WebSocketSignaller } from '../../src/signal/websocket.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

function signaller(url: string) {
  const key = PrivateKey.generate();
  const sig = new WebSocketSignaller(url, key);
  closers.push(() => sig.close());
  const got: Uint8Array[] = [];
  sig.listen(key.publicKey, (m) => got.push(m));
  return { key, sig, got, ws: () => (sig as unknown as { ws: WebSocket }).ws };
}

async function registered(relay: SignalRelayServer, n: number): Promise<void> {
  await until(() => relay.counters.get('registered') >= n);
}

describe('SignalRelayServer under a flood', () => {
  it('a receiver that never reads costs at most maxBufferedBytes; the rest is dropped and counted', async () => {
    const bound = 256 << 10;
    const relay = await SignalRelayServer.listen({
      maxBufferedBytes: bound,
      senderRate: { bytesPerSec: 1e12, burst: 1e12 }, // this test is about the receiver bound alone
    });
    closers.push(() => relay.close());
    const victim = signaller(relay.url);
    const flooder = signaller(relay.url);
    const c = signaller(relay.url);
    const d = signaller(relay.url);
    await registered(relay, 4);
    victim.ws().pause(); // never reads again: the kernel buffers fill, then the relay's own buffer would grow

    const N = 2_000;
    const msg = new Uint8Array(15 << 10).fill(0x42); // just under the 16 KiB message cap
    for (let i = 0; i < N; i++) flooder.sig.send(victim.key.publicKey, msg);
    // Read straight from the relay's connections (not only its gauge), so the bound is checked on what it holds.
    const inboxes = (relay as unknown as { inboxes: Map<string, WebSocket> }).inboxes;
    let maxSeen = 0;
    await until(() => {
      for (const ws of inboxes.values()) maxSeen = Math.max(maxSeen, ws.bufferedAmount);
      return relay.counters.get('relayed') + relay.counters.get('drop-receiver-full') >= N;
    }, 30_000);

    expect(relay.counters.get('drop-receiver-full')).toBeGreaterThan(0);
    expect(maxSeen).toBeLessThanOrEqual(bound);
    expect(relay.maxBufferedAmount()).toBeLessThanOrEqual(bound);
    // A well-behaved pair on the same relay still talks, both ways.
    c.sig.send(d.key.publicKey, new Uint8Array([1, 2, 3]));
    d.sig.send(c.key.publicKey, new Uint8Array([4, 5, 6]));
    await until(() => c.got.length === 1 && d.got.length === 1);
    expect([...d.got[0]!]).toEqual([1, 2, 3]);
    expect([...c.got[0]!]).toEqual([4, 5, 6]);
  }, 40_000);

  it('each sender has a token bucket: a flooding key is cut to its rate, an honest one is not', async () => {
    const relay = await SignalRelayServer.listen({ senderRate: { bytesPerSec: 16 << 10, burst: 64 << 10 } });
    closers.push(() => relay.close());
    const receiver = signaller(relay.url);
    const flooder = signaller(relay.url);
    const honest = signaller(relay.url);
    await registered(relay, 3);

    const N = 200;
    const msg = new Uint8Array(4 << 10).fill(7); // 800 KiB in all, 12.5 × the burst
    const t0 = performance.now();
    for (let i = 0; i < N; i++) flooder.sig.send(receiver.key.publicKey, msg);
    honest.sig.send(receiver.key.publicKey, new Uint8Array([9]));
    await until(() => relay.counters.get('relayed') + relay.counters.get('drop-rate-limit') >= N + 1);
    const elapsedS = (performance.now() - t0) / 1000;
    await until(() => receiver.got.length === relay.counters.get('relayed'));

    const allowed = Math.ceil(((64 << 10) + (16 << 10) * elapsedS) / (4 << 10)) + 1;
    const fromFlooder = receiver.got.filter((m) => m.length === 4 << 10).length;
    expect(fromFlooder).toBeLessThanOrEqual(allowed);
    expect(relay.counters.get('drop-rate-limit')).toBe(N - fromFlooder);
    expect(relay.counters.get('drop-rate-limit')).toBeGreaterThan(N / 2);
    expect(receiver.got.filter((m) => m.length === 1)).toHaveLength(1); // the honest sender got through
  });
});
