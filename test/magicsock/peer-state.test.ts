import { describe, expect, it } from 'vitest';
import { ErrorCode, MeshsockError } from '../../src/errors.js';
import { fromHex } from '../../src/internal/bytes.js';
import { systemRandom } from '../../src/internal/clock.js';
import { PrivateKey, PublicKey } from '../../src/key/keys.js';
import { MAGICSOCK } from '../../src/magicsock/constants.js';
import { PeerState } from '../../src/magicsock/peer-state.js';

/**
 * Low-order Curve25519 points (X25519 with them yields all zeros, which node:crypto/OpenSSL refuses). Source: the
 * list of points of small order in Bernstein's "Curve25519" notes / libsodium's `blacklist` in
 * crypto_scalarmult/curve25519/ref10/x25519_ref10.c (0, 1, and the order-8 point below).
 */
const LOW_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
];

const self = PrivateKey.generate();
const ourDisco = PrivateKey.generate('disco');
const newPeer = () => new PeerState(PrivateKey.generate().publicKey, self, systemRandom);

describe('PeerState', () => {
  it.each(LOW_ORDER)('refuses to bind the low-order disco key %s (no throw, nothing bound)', (hex) => {
    const p = newPeer();
    expect(p.bindDisco(fromHex(hex), ourDisco, false)).toBe(false);
    expect(p.discoKey).toBeUndefined();
    expect(p.discoShared).toBeUndefined();
    expect(p.core.hasDiscoKey).toBe(false);
    // A good key still binds afterwards, and a later bad one leaves the good one in place.
    const good = PrivateKey.generate('disco').publicKey;
    expect(p.bindDisco(good.bytes, ourDisco, false)).toBe(true);
    expect(p.bindDisco(fromHex(hex), ourDisco, false)).toBe(false);
    expect(p.discoKey!.hex).toBe(good.hex);
  });

  it.each(LOW_ORDER)('a low-order node key %s is BAD_KEY at construction (addPeer), not a crash later', (hex) => {
    const make = () => new PeerState(new PublicKey(fromHex(hex)), self, systemRandom);
    expect(make).toThrow(MeshsockError);
    try {
      make();
    } catch (err) {
      expect((err as MeshsockError).code).toBe(ErrorCode.BAD_KEY);
    }
  });

  it('bindDisco: true for a new or changed key (the peer restarted), false for the same key; a change resets knowsOurDisco', () => {
    const p = newPeer();
    const k1 = PrivateKey.generate('disco').publicKey;
    const k2 = PrivateKey.generate('disco').publicKey;
    expect(p.bindDisco(k1.bytes, ourDisco, true)).toBe(true);
    expect(p.discoFromHints).toBe(true);
    p.knowsOurDisco = true;
    expect(p.bindDisco(k1.bytes, ourDisco, false)).toBe(false);
    expect(p.knowsOurDisco).toBe(true);
    expect(p.bindDisco(k2.bytes, ourDisco, false)).toBe(true);
    expect(p.knowsOurDisco).toBe(false);
    expect(p.discoFromHints).toBe(false);
    expect(p.core.hasDiscoKey).toBe(true);
  });

  it('pending queue: copies, keeps at most PENDING_QUEUE_MAX (drops the oldest), expires after PENDING_MAX_AGE_MS', () => {
    const p = newPeer();
    const buf = new Uint8Array([1, 2, 3]);
    expect(p.enqueue(buf, 0)).toBe(true);
    buf[0] = 9; // the queued copy is not the caller's buffer
    for (let i = 1; i < MAGICSOCK.PENDING_QUEUE_MAX; i++) expect(p.enqueue(new Uint8Array([i]), 1000)).toBe(true);
    expect(p.enqueue(new Uint8Array([200]), 1000)).toBe(false);
    expect(p.pending).toHaveLength(MAGICSOCK.PENDING_QUEUE_MAX);
    const [fresh, expired] = p.takePending(1000 + MAGICSOCK.PENDING_MAX_AGE_MS);
    expect(expired).toBe(0);
    expect(fresh[0]).toEqual(new Uint8Array([1]));
    expect(fresh.at(-1)).toEqual(new Uint8Array([200]));
    expect(p.pending).toEqual([]);
    p.enqueue(new Uint8Array([7]), 0);
    p.enqueue(new Uint8Array([8]), 4000);
    const [f2, e2] = p.takePending(MAGICSOCK.PENDING_MAX_AGE_MS + 1);
    expect([f2, e2]).toEqual([[new Uint8Array([8])], 1]);
  });

  it('rxDirectPath returns one frozen object per address (no allocation per datagram)', () => {
    const p = newPeer();
    const a = p.rxDirectPath('127.0.0.1:1');
    expect(p.rxDirectPath('127.0.0.1:1')).toBe(a);
    expect(a).toEqual({ type: 'direct', addr: '127.0.0.1:1', latencyMs: undefined });
    expect(Object.isFrozen(a)).toBe(true);
  });

  it('dedupActive: never for a peer with no DERP relation (no twin can exist)', () => {
    const p = newPeer();
    expect(p.dedupActive(0)).toBe(false); // untrusted, just changed path, but no DERP: no twins
    p.lastPathChangeAt = 0;
    expect(p.dedupActive(1)).toBe(false);
    for (const set of [
      (q: PeerState) => (q.derpRegion = 1),
      (q: PeerState) => (q.lastHeardRegion = 2),
      (q: PeerState) => (q.lastDerpRecvAt = -1e9),
    ]) {
      const q = newPeer();
      set(q);
      expect(q.dedupActive(0)).toBe(true);
    }
  });

  it('dedupActive with a DERP relation: while untrusted, and for a window after DERP data or a path change', () => {
    const p = newPeer();
    p.lastHeardRegion = 1;
    const W = MAGICSOCK.DEDUP_WINDOW_MS;
    expect(p.dedupActive(0)).toBe(true); // no trusted path
    p.core.best = {
      addr: { ip: '127.0.0.1', port: 1 },
      key: '127.0.0.1:1',
      latencyMs: 1,
      since: 0,
      trustUntil: 100_000,
    };
    expect(p.dedupActive(10_000)).toBe(false);
    p.lastDerpRecvAt = 10_000;
    expect(p.dedupActive(10_000 + W - 1)).toBe(true);
    expect(p.dedupActive(10_000 + W)).toBe(false);
    p.lastPathChangeAt = 20_000;
    expect(p.dedupActive(20_000 + W - 1)).toBe(true);
    expect(p.dedupActive(200_000)).toBe(true); // trust expired
  });
});
