/**
 * Hostile input against a live MagicSocket `a` that has a real peer `b` on a direct path (loopback).
 *
 * An attacker with its own UDP sockets sends 100,000 datagrams at `a`: random bytes of random lengths; STUN with
 * valid headers (unknown-TxID responses, truncated, bit-flipped, garbage attributes); disco packets from unknown
 * keys, validly sealed from keys bound to no peer, claiming b's disco key with bad boxes, sealed by b's disco key
 * with malformed content, replays of b's pongs for a's real ping TxIDs, and CallMeMaybe over UDP; and, through the
 * signaller, garbage envelopes, envelopes from unknown peers and envelopes under b's name sealed with wrong keys.
 * Meanwhile a and b keep exchanging datagrams.
 *
 * The test knows b's disco private key (b's RandomSource is wrapped and the first 32-byte draw is its disco key)
 * and a's ping TxIDs (a's RandomSource records its 12-byte draws), so "replayed" pongs are b's real pongs for real
 * pings, sealed again — exactly what a capture would yield, since a pong's bytes depend only on those.
 *
 * Pacing: the attacker keeps at most WINDOW datagrams in flight towards `a` (sent minus what a's counters show as
 * processed), so the kernel receive buffer never overflows and every datagram sent must appear in a counter.
 */
import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { DISCO_MAGIC, isDisco, sealDisco } from '../../src/disco/envelope.js';
import type { DiscoMessage } from '../../src/disco/message.js';
import { ErrorCode } from '../../src/errors.js';
import { parseAddrPort } from '../../src/internal/addr.js';
import { systemRandom } from '../../src/internal/clock.js';
import { SharedKey } from '../../src/key/box.js';
import { PrivateKey, PublicKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import { SIGNAL_MAGIC, sealSignal } from '../../src/signal/envelope.js';
import { MemorySignalHub } from '../../src/signal/memory.js';
import { encodeBindingSuccess, isStun } from '../../src/stun/message.js';
import { StunServer } from '../../src/stun/server.js';

const TOTAL = 100_000;
const SIGNALS = 3_000;
const WINDOW = 512;
const ATTACKER_SOCKETS = 4;
const SEED = Number(process.env.HOSTILE_SEED ?? 0x5eed);

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** mulberry32: a tiny seeded PRNG, so a failing run can be replayed with HOSTILE_SEED. */
function prng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pool = new Uint8Array(1 << 20);
  for (let i = 0; i < pool.length; i += 4) new DataView(pool.buffer).setUint32(i, int(2 ** 32));
  const bytes = (n: number) => {
    const off = int(pool.length - n);
    return pool.slice(off, off + n);
  };
  return { int, bytes, pick: <T>(xs: readonly T[]) => xs[int(xs.length)]! };
}

const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Catches anything that escapes to the process while a test runs. */
function trapEscapes(): unknown[] {
  const escaped: unknown[] = [];
  const onError = (e: unknown) => escaped.push(e);
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  closers.push(() => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  });
  return escaped;
}

async function livePair() {
  const stun = await StunServer.listen({ host: '127.0.0.1', port: 0 });
  closers.push(() => stun.close());
  const hub = new MemorySignalHub();
  const aTxIds: Uint8Array[] = [];
  const aRng = (n: number) => {
    const b = systemRandom(n);
    if (n === 12 && aTxIds.length < 4096) aTxIds.push(b.slice());
    return b;
  };
  let bDiscoRaw: Uint8Array | undefined;
  const bRng = (n: number) => {
    const b = systemRandom(n);
    if (bDiscoRaw === undefined && n === 32) bDiscoRaw = b.slice();
    return b;
  };
  const aKey = PrivateKey.generate();
  const bKey = PrivateKey.generate();
  const common = { bindAddress: '127.0.0.1', stunServers: [`127.0.0.1:${stun.address.port}`] };
  const a = await MagicSocket.create({ ...common, privateKey: aKey, signaller: hub.signaller(), rng: aRng });
  const b = await MagicSocket.create({ ...common, privateKey: bKey, signaller: hub.signaller(), rng: bRng });
  closers.push(
    () => a.close(),
    () => b.close(),
  );
  a.addPeer(b.publicKey);
  b.addPeer(a.publicKey);
  const [pa, pb] = await Promise.all([
    a.waitForPath(b.publicKey, { timeoutMs: 10_000 }),
    b.waitForPath(a.publicKey, { timeoutMs: 10_000 }),
  ]);
  if (pa.type !== 'direct' || pb.type !== 'direct') throw new Error('no direct path');
  const bDisco = new PrivateKey(bDiscoRaw!, 'disco');
  expect(bDisco.publicKey.hex).toBe(b.discoPublicKey.hex);
  const aAddr = parseAddrPort(a.status().localAddresses[0]!);
  const bAddr = b.status().localAddresses[0]!;
  return { hub, a, b, aKey, bKey, bDisco, aTxIds, aAddr, bAddr, pathAB: pa, pathBA: pb };
}

async function attackerSockets(n: number): Promise<dgram.Socket[]> {
  const out: dgram.Socket[] = [];
  for (let i = 0; i < n; i++) {
    const s = dgram.createSocket({ type: 'udp4', sendBufferSize: 4 << 20 });
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
    closers.push(() => s.close());
    out.push(s);
  }
  return out;
}

type Counter = string;
/** What each category must show up as in a's counters. */
const CATEGORY_COUNTER: Record<string, Counter> = {
  'random → unknown source': 'drop-unknown-source',
  'random → stun': 'drop-stun-unmatched',
  'random → disco': 'drop-disco-unknown-key',
  'stun: unknown TxID / truncated / bit-flipped / garbage attributes': 'drop-stun-unmatched',
  'disco: unknown sender key': 'drop-disco-unknown-key',
  'disco: valid box from a key bound to no peer': 'drop-disco-unknown-key',
  "disco: b's key, bad box": 'drop-disco-bad-box',
  "disco: b's key, malformed content": 'drop-disco-malformed',
  "disco: replayed b pong for a's real TxID": 'drop-pong-unmatched',
  'disco: CallMeMaybe over UDP': 'drop-cmm-not-signalled',
  'signal: garbage': 'drop-signal-malformed',
  'signal: unknown peer': 'drop-signal-unknown-peer',
  "signal: b's name, wrong key": 'drop-signal-bad-box',
};

describe('MagicSocket under hostile input', () => {
  it(`survives ${TOTAL.toLocaleString('en')} hostile datagrams and ${SIGNALS.toLocaleString('en')} hostile signals with its peer's path intact`, async () => {
    const escaped = trapEscapes();
    const { hub, a, b, bDisco, aTxIds, aAddr, bAddr, pathAB, pathBA } = await livePair();
    const rnd = prng(SEED);
    const atk = await attackerSockets(ATTACKER_SOCKETS);
    const atkAddrs = new Set(atk.map((s) => `127.0.0.1:${s.address().port}`));

    // --- What a's application sees, and path changes, during the attack -----------------------------------------
    const bad: string[] = [];
    let legitAtA = 0;
    let legitAtB = 0;
    a.on('message', (data, peer, path) => {
      const text = Buffer.from(data).toString();
      if (
        !peer.equals(b.publicKey) ||
        path.type !== 'direct' ||
        path.addr !== bAddr ||
        !text.startsWith('legit b→a ')
      ) {
        bad.push(`${peer.toString()} ${JSON.stringify(path)} ${text.slice(0, 40)}`);
      } else legitAtA++;
    });
    b.on('message', (data) => {
      if (Buffer.from(data).toString().startsWith('legit a→b ')) legitAtB++;
    });
    const pathEvents: string[] = [];
    a.on('path', (k, p, _prev, why) => pathEvents.push(`a ${k.short()} ${JSON.stringify(p)} ${why}`));
    b.on('path', (k, p, _prev, why) => pathEvents.push(`b ${k.short()} ${JSON.stringify(p)} ${why}`));
    let legitSent = 0;
    const legit = setInterval(() => {
      legitSent++;
      b.send(a.publicKey, Buffer.from(`legit b→a ${legitSent}`));
      a.send(b.publicKey, Buffer.from(`legit a→b ${legitSent}`));
    }, 2);
    closers.push(() => clearInterval(legit));

    // --- Material ---------------------------------------------------------------------------------------------
    const aDisco = a.discoPublicKey;
    const bToA = SharedKey.compute(bDisco, aDisco); // b's real disco box key towards a
    const strangers = Array.from({ length: 4 }, () => PrivateKey.generate('disco'));
    const strangerShared = strangers.map((k) => SharedKey.compute(k, aDisco));
    const pingMsg = (): DiscoMessage => ({
      type: 'ping',
      txId: rnd.bytes(12),
      nodeKey: rnd.bytes(32),
      padding: rnd.int(40),
    });
    const unboundPool = Array.from({ length: 300 }, (_, i) => {
      const m: DiscoMessage =
        i % 3 === 0
          ? pingMsg()
          : i % 3 === 1
            ? { type: 'pong', txId: rnd.bytes(12), src: aAddr }
            : { type: 'callMeMaybe', endpoints: [aAddr] };
      return sealDisco(strangers[i % 4]!.publicKey.bytes, strangerShared[i % 4]!, m);
    });
    const realFromB = Array.from({ length: 100 }, () => sealDisco(bDisco.publicKey.bytes, bToA, pingMsg()));
    const malformedInner = (i: number): Uint8Array => {
      switch (i % 4) {
        case 0:
          return new Uint8Array([0x04 + rnd.int(250), 0, ...rnd.bytes(rnd.int(60))]); // unknown type
        case 1:
          return new Uint8Array([0x02, 0, ...rnd.bytes(rnd.int(30))]); // pong too short
        case 2:
          return new Uint8Array([0x01, 0, ...rnd.bytes(rnd.int(12))]); // ping too short
        default:
          return rnd.bytes(rnd.int(2)); // shorter than the header
      }
    };
    const malformedPool = Array.from({ length: 200 }, (_, i) => {
      const nonce = rnd.bytes(24);
      return new Uint8Array([
        ...DISCO_MAGIC,
        ...bDisco.publicKey.bytes,
        ...nonce,
        ...bToA.seal(nonce, malformedInner(i)),
      ]);
    });
    const pongPool = () => {
      const txs = aTxIds.slice(-200);
      return txs.map((txId) => sealDisco(bDisco.publicKey.bytes, bToA, { type: 'pong', txId, src: aAddr }));
    };
    let replayedPongs = pongPool();
    expect(replayedPongs.length).toBeGreaterThan(0);
    const cmmPool = Array.from({ length: 50 }, () =>
      sealDisco(bDisco.publicKey.bytes, bToA, { type: 'callMeMaybe', endpoints: [...atkAddrs].map(parseAddrPort) }),
    );
    const stunResponse = () => encodeBindingSuccess(rnd.bytes(12), { ip: '203.0.113.5', port: 1 + rnd.int(65535) });

    const sent: Record<string, number> = {};
    const note = (cat: string) => (sent[cat] = (sent[cat] ?? 0) + 1);

    const makeDatagram = (i: number): Uint8Array => {
      const r = i % 10;
      if (r < 4) {
        const d = rnd.bytes(rnd.int(1501));
        note(isStun(d) ? 'random → stun' : isDisco(d) ? 'random → disco' : 'random → unknown source');
        return d;
      }
      if (r < 6) {
        note('stun: unknown TxID / truncated / bit-flipped / garbage attributes');
        const base = stunResponse();
        switch (i % 4) {
          case 0:
            return base;
          case 1:
            return base.subarray(0, 20 + rnd.int(base.length - 20));
          case 2: {
            const d = base.slice();
            for (let k = 0, n = 1 + rnd.int(8); k < n; k++) {
              const off = rnd.pick([1, 2, 3, ...Array.from({ length: d.length - 8 }, (_, j) => 8 + j)]);
              d[off]! ^= 1 << rnd.int(8);
            }
            return d;
          }
          default: {
            const attrs = rnd.bytes(rnd.int(300));
            const h = new Uint8Array(20 + attrs.length);
            h.set(base.subarray(0, 20));
            new DataView(h.buffer).setUint16(0, rnd.pick([0x0001, 0x0101, 0x0111, 0x0011, rnd.int(0x3fff)]));
            new DataView(h.buffer).setUint16(2, rnd.int(2) ? attrs.length : rnd.int(65536));
            h.set(attrs, 20);
            return h;
          }
        }
      }
      switch (i % 7) {
        case 0:
          note('disco: unknown sender key');
          return new Uint8Array([...DISCO_MAGIC, ...rnd.bytes(32), ...rnd.bytes(24), ...rnd.bytes(rnd.int(200))]);
        case 1:
          note('disco: valid box from a key bound to no peer');
          return rnd.pick(unboundPool);
        case 2:
        case 3: {
          note("disco: b's key, bad box");
          if (i % 2)
            return new Uint8Array([
              ...DISCO_MAGIC,
              ...bDisco.publicKey.bytes,
              ...rnd.bytes(24),
              ...rnd.bytes(rnd.int(120)),
            ]);
          const d = rnd.pick(realFromB).slice();
          const off = 38 + rnd.int(d.length - 38); // nonce or box
          d[off]! ^= 1 << rnd.int(8);
          return d;
        }
        case 4:
          note("disco: b's key, malformed content");
          return rnd.pick(malformedPool);
        case 5:
          note("disco: replayed b pong for a's real TxID");
          return rnd.pick(replayedPongs);
        default:
          note('disco: CallMeMaybe over UDP');
          return rnd.pick(cmmPool);
      }
    };

    // --- The attack ---------------------------------------------------------------------------------------------
    const before = a.counters.snapshot();
    const c = (k: string) => a.counters.get(k as never);
    const processed = () => c('rx-stun') + c('rx-disco') + c('drop-unknown-source');
    const base = processed();
    const t0 = performance.now();
    const attacker = hub.signaller();
    const signalPool: Array<[string, Uint8Array]> = [];
    const eveNode = PrivateKey.generate();
    const eveToA = SharedKey.compute(eveNode, a.publicKey);
    const content = {
      senderDisco: rnd.bytes(32),
      knownReceiverDisco: aDisco.bytes,
      message: { type: 'callMeMaybe', endpoints: [...atkAddrs].map(parseAddrPort) },
    } as const;
    for (let i = 0; i < SIGNALS; i++) {
      switch (i % 4) {
        case 0:
          signalPool.push(['signal: garbage', rnd.bytes(rnd.int(300))]);
          break;
        case 1: // the magic and a random (unknown) sender, random box
          signalPool.push([
            'signal: unknown peer',
            new Uint8Array([...SIGNAL_MAGIC, ...rnd.bytes(32 + 24 + 16 + rnd.int(200))]),
          ]);
          break;
        case 2: // validly sealed by eve, who is nobody's peer
          signalPool.push(['signal: unknown peer', sealSignal(eveNode.publicKey.bytes, eveToA, content)]);
          break;
        default: // b's node key in the header, sealed with eve's key
          signalPool.push(["signal: b's name, wrong key", sealSignal(b.publicKey.bytes, eveToA, content)]);
      }
    }
    let stalledSince = performance.now();
    let lastProgress = base;
    for (let i = 0; i < TOTAL; i++) {
      while (i - (processed() - base) >= WINDOW) {
        await yieldToLoop();
        if (processed() !== lastProgress) {
          lastProgress = processed();
          stalledSince = performance.now();
        } else if (performance.now() - stalledSince > 3000)
          throw new Error(`a stopped counting at ${i} datagrams sent`);
      }
      const d = makeDatagram(i);
      atk[i % ATTACKER_SOCKETS]!.send(d, aAddr.port, aAddr.ip);
      if (i % 64 === 63) await yieldToLoop();
      if (i % 100 === 0 && signalPool.length) {
        for (let k = 0; k < 3 && signalPool.length; k++) {
          const [cat, env] = signalPool.pop()!;
          note(cat);
          attacker.send(a.publicKey, env);
        }
      }
      if (i % 20_000 === 19_999) replayedPongs = pongPool(); // include TxIDs of heartbeats sent meanwhile
    }
    for (const [cat, env] of signalPool.splice(0)) {
      note(cat);
      attacker.send(a.publicKey, env);
    }
    const deadline = performance.now() + 5000;
    while ((processed() - base < TOTAL || legitAtA < legitSent - 5) && performance.now() < deadline) await sleep(5);
    clearInterval(legit);
    await sleep(50); // the last legit datagrams and signals
    const ms = performance.now() - t0;

    // --- Verdict --------------------------------------------------------------------------------------------------
    expect(escaped).toEqual([]);
    expect(bad).toEqual([]);
    expect(pathEvents).toEqual([]);
    expect(a.pathOf(b.publicKey)).toEqual(pathAB);
    expect(b.pathOf(a.publicKey)).toEqual(pathBA);
    const cands = a.status().peers[0]!.candidates.map((x) => x.addr);
    expect(cands.filter((x) => atkAddrs.has(x))).toEqual([]);
    expect(legitAtA).toBe(legitSent);
    expect(legitAtB).toBe(legitSent);

    const after = a.counters.snapshot();
    const delta = (k: string) => (after[k] ?? 0) - (before[k] ?? 0);
    const expected: Record<string, number> = {};
    for (const [cat, n] of Object.entries(sent))
      expected[CATEGORY_COUNTER[cat]!] = (expected[CATEGORY_COUNTER[cat]!] ?? 0) + n;
    const udpSent = Object.entries(sent)
      .filter(([k]) => !k.startsWith('signal'))
      .reduce((s, [, n]) => s + n, 0);
    expect(udpSent).toBe(TOTAL);
    const table = Object.entries(expected).map(([counter, n]) => ({ counter, sent: n, counted: delta(counter) }));
    for (const row of table) expect(row.counted, row.counter).toBeGreaterThanOrEqual(row.sent);
    const dropSum = Object.keys(after)
      .filter((k) => k.startsWith('drop-'))
      .reduce((s, k) => s + delta(k), 0);
    expect(dropSum).toBeGreaterThanOrEqual(TOTAL + SIGNALS);
    expect(processed() - base).toBeGreaterThanOrEqual(TOTAL);

    // Still fully working afterwards.
    const echo = new Promise<string>((resolve) => a.once('message', (d) => resolve(Buffer.from(d).toString())));
    b.send(a.publicKey, Buffer.from('legit b→a after'));
    expect(await echo).toBe('legit b→a after');
    console.info(
      `hostile-input: ${TOTAL} datagrams + ${SIGNALS} signals in ${ms.toFixed(0)} ms (seed ${SEED}); legit ${legitSent} each way, all delivered\n` +
        table
          .map((r) => `  ${r.counter.padEnd(26)} sent ${String(r.sent).padStart(6)}  counted ${r.counted}`)
          .join('\n'),
    );
  });

  it('a peer that signals a low-order disco key (validly sealed with its node key) is refused, not a crash', async () => {
    const escaped = trapEscapes();
    const { hub, a, b, bKey, pathAB } = await livePair();
    const toA = SharedKey.compute(bKey, a.publicKey);
    for (const hex of ['00'.repeat(32), `01${'00'.repeat(31)}`]) {
      const env = sealSignal(b.publicKey.bytes, toA, {
        senderDisco: Buffer.from(hex, 'hex'),
        knownReceiverDisco: a.discoPublicKey.bytes,
        message: { type: 'callMeMaybe', endpoints: [] },
      });
      hub.signaller().send(a.publicKey, env);
    }
    await sleep(50);
    expect(escaped).toEqual([]);
    expect(a.status().peers[0]!.discoKey).toBe(b.discoPublicKey.toString());
    expect(a.pathOf(b.publicKey)).toEqual(pathAB);
  });

  it('addPeer with a low-order node key fails with BAD_KEY and adds nothing', async () => {
    const a = await MagicSocket.create({ privateKey: PrivateKey.generate(), bindAddress: '127.0.0.1' });
    closers.push(() => a.close());
    expect(() => a.addPeer(new PublicKey(new Uint8Array(32)))).toThrow(
      expect.objectContaining({ code: ErrorCode.BAD_KEY }),
    );
    expect(a.status().peers).toEqual([]);
  });

  // A ping is not bound to a fresh challenge: one of b's pings, captured and replayed from the attacker's own address,
  // makes `a` pong there and list that address as a (peer-reflexive) candidate. It must not make `a` accept the
  // attacker's datagrams as b's: data from an address is delivered only once a pong from it proves it (datagrams that
  // arrive before are held for HELD_MAX_AGE_MS, then dropped).
  it('a replayed ping of the peer, sent from an attacker address, does not let that address speak as the peer', async () => {
    const { a, b, bDisco, aAddr, pathAB } = await livePair();
    const [atk] = await attackerSockets(1);
    const got: string[] = [];
    a.on('message', (d, _peer, path) =>
      got.push(`${path.type === 'direct' ? path.addr : path.type} ${Buffer.from(d).toString()}`),
    );
    const captured = sealDisco(bDisco.publicKey.bytes, SharedKey.compute(bDisco, a.discoPublicKey), {
      type: 'ping',
      txId: systemRandom(12),
      nodeKey: b.publicKey.bytes,
      padding: 0,
    });
    for (let round = 0; round < 3; round++) {
      atk!.send(captured, aAddr.port, aAddr.ip);
      await sleep(20);
      for (let i = 0; i < 5; i++) atk!.send(Buffer.from(`spoofed ${round}.${i}`), aAddr.port, aAddr.ip);
      await sleep(600); // 1.8 s in all: longer than the hold window
    }
    expect(got).toEqual([]);
    expect(a.pathOf(b.publicKey)).toEqual(pathAB);
  });

  // Datagrams held from an unproven address and then dropped are each counted, also when they expire unproven.
  it('every datagram dropped from an unproven address is counted', async () => {
    const { a, b, bDisco, aAddr } = await livePair();
    const [atk] = await attackerSockets(1);
    const captured = sealDisco(bDisco.publicKey.bytes, SharedKey.compute(bDisco, a.discoPublicKey), {
      type: 'ping',
      txId: systemRandom(12),
      nodeKey: b.publicKey.bytes,
      padding: 0,
    });
    const before = a.counters.snapshot();
    atk!.send(captured, aAddr.port, aAddr.ip);
    await sleep(20);
    const SPOOFED = 100;
    for (let i = 0; i < SPOOFED; i++) {
      atk!.send(Buffer.from(`spoofed ${i}`), aAddr.port, aAddr.ip);
      if (i % 10 === 9) await sleep(150);
    }
    await sleep(1500); // every held datagram has expired
    const after = a.counters.snapshot();
    const dropped = Object.keys(after)
      .filter((k) => k.startsWith('drop-') && k !== 'drop-disco-unknown-key')
      .reduce((n, k) => n + (after[k] ?? 0) - (before[k] ?? 0), 0);
    expect(dropped).toBeGreaterThanOrEqual(SPOOFED);
  });
});
