import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { DISCO_MAGIC, ENVELOPE, discoSender, isDisco, openDisco, sealDisco } from '../../src/disco/envelope.js';
import { encodeDiscoMessage, type DiscoMessage } from '../../src/disco/message.js';
import { DecodeError } from '../../src/errors.js';
import { toHex } from '../../src/internal/bytes.js';
import { SharedKey } from '../../src/key/box.js';
import { PrivateKey } from '../../src/key/keys.js';

const ping: DiscoMessage = {
  type: 'ping',
  txId: new Uint8Array(12).fill(7),
  nodeKey: new Uint8Array(32).fill(9),
  padding: 0,
};

describe('disco envelope', () => {
  const a = PrivateKey.generate('disco');
  const b = PrivateKey.generate('disco');
  const ab = SharedKey.compute(a, b.publicKey);
  const ba = SharedKey.compute(b, a.publicKey);

  it('has the Tailscale layout: magic, sender key, nonce, NaCl box (124 bytes for a ping with a node key)', () => {
    const nonce = new Uint8Array(24).fill(5);
    const pkt = sealDisco(a.publicKey.bytes, ab, ping, () => nonce);
    expect(pkt.length).toBe(124);
    expect(toHex(pkt.subarray(0, 6))).toBe('5453f09f92ac');
    expect(toHex(pkt.subarray(6, 38))).toBe(a.publicKey.hex);
    expect(toHex(pkt.subarray(38, 62))).toBe(toHex(nonce));
    // Independent check of the box with tweetnacl.
    const opened = nacl.box.open(pkt.subarray(62), nonce, a.publicKey.bytes, b.bytes);
    expect(opened && toHex(opened)).toBe(toHex(encodeDiscoMessage(ping)));
    expect(openDisco(pkt, ba)).toEqual(ping);
    expect(toHex(discoSender(pkt)!)).toBe(a.publicKey.hex);
  });

  it('opens a box sealed by tweetnacl', () => {
    const nonce = new Uint8Array(24).fill(1);
    const inner = encodeDiscoMessage({ type: 'callMeMaybe', endpoints: [{ ip: '198.51.100.7', port: 41641 }] });
    const pkt = new Uint8Array([
      ...DISCO_MAGIC,
      ...a.publicKey.bytes,
      ...nonce,
      ...nacl.box(inner, nonce, b.publicKey.bytes, a.bytes),
    ]);
    expect(openDisco(pkt, ba)).toEqual({ type: 'callMeMaybe', endpoints: [{ ip: '198.51.100.7', port: 41641 }] });
  });

  it('returns undefined for a box sealed for someone else or tampered', () => {
    const c = PrivateKey.generate('disco');
    const pkt = sealDisco(a.publicKey.bytes, ab, ping);
    expect(openDisco(pkt, SharedKey.compute(c, a.publicKey))).toBeUndefined();
    const bad = pkt.slice();
    bad[bad.length - 1]! ^= 0x80;
    expect(openDisco(bad, ba)).toBeUndefined();
    expect(openDisco(pkt.subarray(0, ENVELOPE.HEADER_LEN + 3), ba)).toBeUndefined();
  });

  it('isDisco never throws and needs magic plus a full header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        expect(isDisco(bytes)).toBe(bytes.length >= 62 && toHex(bytes.subarray(0, 6)) === '5453f09f92ac');
      }),
    );
    expect(isDisco(new Uint8Array([...DISCO_MAGIC, ...new Uint8Array(56)]))).toBe(true);
    expect(isDisco(new Uint8Array([...DISCO_MAGIC, ...new Uint8Array(55)]))).toBe(false);
    expect(() => openDisco(new Uint8Array(10), ba)).toThrow(DecodeError);
  });

  it('openDisco throws only DecodeError, or returns undefined, on mutated packets', () => {
    const pkt = sealDisco(a.publicKey.bytes, ab, ping);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: pkt.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        fc.nat(pkt.length),
        (i, x, cut) => {
          const m = pkt.slice(0, Math.max(cut, 1));
          if (i < m.length) m[i]! ^= x;
          try {
            const r = openDisco(m, ba);
            if (r) expect(r).toEqual(ping);
          } catch (e) {
            expect(e).toBeInstanceOf(DecodeError);
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
