import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { PrivateKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import { SignalRelayServer, WebSocketSignaller } from '../../src/signal/websocket.js';
import { StunServer } from '../../src/stun/server.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

describe('WebSocket signalling', () => {
  it('two sockets find a direct path with CallMeMaybe relayed over WebSocket', async () => {
    const relay = await SignalRelayServer.listen();
    const stun = await StunServer.listen({ host: '127.0.0.1', port: 0 });
    closers.push(
      () => relay.close(),
      () => stun.close(),
    );
    const mk = async () => {
      const key = PrivateKey.generate();
      const signaller = new WebSocketSignaller(relay.url, key);
      const s = await MagicSocket.create({
        privateKey: key,
        bindAddress: '127.0.0.1',
        stunServers: [`127.0.0.1:${stun.address.port}`],
        signaller,
      });
      closers.push(
        () => s.close(),
        () => signaller.close(),
      );
      return s;
    };
    const a = await mk();
    const b = await mk();
    a.addPeer(b.publicKey);
    b.addPeer(a.publicKey);
    await Promise.all([
      a.waitForPath(b.publicKey, { timeoutMs: 10_000 }),
      b.waitForPath(a.publicKey, { timeoutMs: 10_000 }),
    ]);
    expect(relay.counters.get('registered')).toBe(2);
    expect(relay.counters.get('relayed')).toBeGreaterThan(0);
  });

  it('rejects a client that cannot prove the key it registers', async () => {
    const relay = await SignalRelayServer.listen();
    closers.push(() => relay.close());
    const victim = PrivateKey.generate();
    const ws = new WebSocket(relay.url);
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.on('message', (d, isBinary) => {
      if (isBinary) return;
      // Claim the victim's key with a proof sealed by another key.
      const bogus = new Uint8Array(32 + 24 + 16 + 16);
      bogus.set(victim.publicKey.bytes);
      ws.send(bogus);
    });
    expect(await closed).toBe(4001);
    expect(relay.counters.get('rejected')).toBe(1);
    expect(relay.counters.get('registered')).toBe(0);
  });
});
