/**
 * A malicious signalling relay, played by the test over real loopback WebSockets, against real WebSocketSignallers
 * and a real MagicSocket. It may choose every byte it sends (challenge, "server key") and deliver anything to
 * anyone; what it must not get is an envelope the victim accepts (issue 12, item 1).
 */
import * as dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { encodeDiscoMessage } from '../../src/disco/message.js';
import { toHex } from '../../src/internal/bytes.js';
import { SharedKey, sealTo } from '../../src/key/box.js';
import { PrivateKey, type PublicKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import { SIGNAL_MAGIC, isSignalEnvelope, openSignal } from '../../src/signal/envelope.js';
import { WebSocketSignaller } from '../../src/signal/websocket.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(10);
  }
}

/** A WebSocket "relay" whose every move is the test's: `hello(n)` says what to send as the n-th connection's hello. */
async function evilRelay(hello: (n: number) => string) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const byKey = new Map<string, WebSocket>();
  const answers: Uint8Array[] = [];
  const received: Array<{ from: string; bytes: Uint8Array }> = [];
  let n = 0;
  wss.on('connection', (ws) => {
    let from: string | undefined;
    ws.send(hello(n++));
    ws.on('message', (d: Buffer) => {
      const b = new Uint8Array(d);
      if (from === undefined) {
        from = toHex(b.subarray(0, 32)); // whatever it proves, the relay reads the key it claims
        byKey.set(from, ws);
        answers.push(b);
        return;
      }
      received.push({ from, bytes: b });
    });
  });
  closers.push(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise<void>((r) => wss.close(() => r()));
  });
  return {
    url: `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/`,
    answers,
    received,
    deliver(to: PublicKey, bytes: Uint8Array): boolean {
      const ws = byKey.get(to.hex);
      if (!ws || ws.readyState !== WebSocket.OPEN) return false;
      ws.send(bytes);
      return true;
    },
  };
}

async function udpTrap() {
  const s = dgram.createSocket('udp4');
  const got: Buffer[] = [];
  s.on('message', (m: Buffer) => got.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => s.close(() => r())));
  return { port: (s.address() as AddressInfo).port, got };
}

describe('a malicious signalling relay', () => {
  it('cannot turn the registration answer into a CallMeMaybe from A (the published attack) nor any other envelope', async () => {
    const a = PrivateKey.generate();
    const b = PrivateKey.generate();
    const attackerDisco = PrivateKey.generate('disco');
    const trap = await udpTrap();
    // The plaintext of a signal envelope carrying the attacker's disco key and address, as today's format lays it
    // out (senderDisco, knownReceiverDisco = zeros, CallMeMaybe).
    const cmm = encodeDiscoMessage({ type: 'callMeMaybe', endpoints: [{ ip: '127.0.0.1', port: trap.port }] });
    const forgedPlain = new Uint8Array([...attackerDisco.publicKey.bytes, ...new Uint8Array(32), ...cmm]);
    // Connection 0 is B's (it connects first). Every other connection gets, in turn: the attack's challenge, a
    // the attack's challenge in upper-case hex, a well-formed 32-byte challenge.
    const relay = await evilRelay((n) => {
      const serverKey = b.publicKey.hex; // "our key is B's node key": the answer is then sealed towards B
      if (n === 0) return JSON.stringify({ challenge: '00'.repeat(32), serverKey: a.publicKey.hex });
      const variants = [toHex(forgedPlain), toHex(forgedPlain).toUpperCase(), '5a'.repeat(32)];
      return JSON.stringify({ challenge: variants[(n - 1) % variants.length], serverKey });
    });
    const bSig = new WebSocketSignaller(relay.url, b);
    closers.push(() => bSig.close());
    const bSock = await MagicSocket.create({ privateKey: b, bindAddress: '127.0.0.1', signaller: bSig });
    closers.push(() => bSock.close());
    bSock.addPeer(a.publicKey);
    await until(() => relay.answers.length === 1);
    const aSig = new WebSocketSignaller(relay.url, a);
    closers.push(() => aSig.close());

    // Whatever A answers, the relay frames as an envelope from A (magic ‖ answer, which begins with A's key) and,
    // in case the answer is short, pads it, then delivers it to B.
    let delivered = 0;
    let seen = 1;
    const end = Date.now() + 5_000;
    while (Date.now() < end && delivered < 1) {
      await sleep(20);
      for (; seen < relay.answers.length; seen++) {
        const ans = relay.answers[seen]!;
        const forged = new Uint8Array([...SIGNAL_MAGIC, ...ans, ...new Uint8Array(Math.max(0, 120 - ans.length))]);
        if (relay.deliver(b.publicKey, forged)) delivered++;
      }
    }
    expect(delivered).toBe(1);
    await sleep(200);
    expect(bSock.counters.get('signal-received')).toBe(0);
    expect(trap.got.length).toBe(0);
    const drops =
      bSock.counters.get('drop-signal-bad-box') +
      bSock.counters.get('drop-signal-malformed') +
      bSock.counters.get('drop-signal-unknown-peer');
    expect(drops).toBe(delivered);
    // A answered only the well-formed challenge (the third connection), with a 64-byte key ‖ MAC: the two
    // malformed ones ended its connection without an answer.
    expect(relay.answers.length).toBe(2);
    expect(relay.answers[1]!.length).toBe(64);
  });

  it('cannot hand A its own envelope back as one from B (the box key is symmetric)', async () => {
    const a = PrivateKey.generate();
    const b = PrivateKey.generate();
    const relay = await evilRelay(() =>
      JSON.stringify({ challenge: '11'.repeat(32), serverKey: PrivateKey.generate().publicKey.hex }),
    );
    const aSig = new WebSocketSignaller(relay.url, a);
    closers.push(() => aSig.close());
    const aSock = await MagicSocket.create({ privateKey: a, bindAddress: '127.0.0.1', signaller: aSig });
    closers.push(() => aSock.close());
    aSock.addPeer(b.publicKey); // A sends B a CallMeMaybe through the relay
    await until(() => relay.received.some((m) => isSignalEnvelope(m.bytes.subarray(32))));
    const env = relay.received.find((m) => isSignalEnvelope(m.bytes.subarray(32)))!.bytes.slice(32);
    const turned = Uint8Array.from(env);
    turned.set(b.publicKey.bytes, SIGNAL_MAGIC.length); // now it claims to come from B
    expect(relay.deliver(a.publicKey, turned)).toBe(true);
    await until(() => aSock.counters.get('drop-signal-bad-box') + aSock.counters.get('signal-received') > 0);
    expect(aSock.counters.get('signal-received')).toBe(0);
    expect(aSock.counters.get('drop-signal-bad-box')).toBe(1);
  });

  it('a DERP ClientInfo sealed to a server key that is B’s node key does not open as an envelope', () => {
    // A DERP server chooses its own key; ClientInfo is Tailscale's wire format (sealTo with the plain box key), so
    // a hostile server announcing B's node key gets a box from A to B. It must not pass for a signal envelope.
    const a = PrivateKey.generate();
    const b = PrivateKey.generate();
    const info = new TextEncoder().encode(JSON.stringify({ version: 2, canAckPings: true, pad: 'x'.repeat(64) }));
    const sealed = sealTo(a, b.publicKey, info);
    const forged = new Uint8Array([...SIGNAL_MAGIC, ...a.publicKey.bytes, ...sealed]);
    expect(isSignalEnvelope(forged)).toBe(true);
    expect(openSignal(forged, SharedKey.compute(b, a.publicKey))).toBeUndefined();
  });
});
