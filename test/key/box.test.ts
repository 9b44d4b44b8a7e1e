import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import { fromHex, toHex } from '../../src/internal/bytes.js';
import { SharedKey, box, boxOpen, openFrom, sealTo } from '../../src/key/box.js';
import { PrivateKey, PublicKey } from '../../src/key/keys.js';

// Vectors from the NaCl distribution's tests/box.c and box2.c (Bernstein, "Cryptography in NaCl", §10):
// Alice's and Bob's secret keys, the shared HSalsa20 key, the nonce and the first 32 bytes of the message.
const alicesk = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
const alicepk = fromHex('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
const bobsk = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
const bobpk = fromHex('de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
const firstkey = '1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389';
const nonce = fromHex('69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37');
const message = fromHex(
  'be075fc53c81f2d5cf141316ebeb0c7b5228c52a4c62cbd44b66849b64244ffce5ecbaaf33bd751a1ac728d45e6c61296cdc3c01233561f41db66cce314adb310e3be8250c46f06dceea3a7fa1348057e2f6556ad6b1318a024a838f21af1fde048977eb48f59ffd4924ca1c60902e52f0a089bc76897040e082f937763848645e0705',
);
// box.c output without its 16 leading zero bytes: tag then ciphertext.
const expectedStart =
  'f3ffc7703f9400e52a7dfb4b3d3305d98e993b9f48681273c29650ba32fc76ce48332ea7164d96a4476fb8c531a1186a';

describe('NaCl box', () => {
  it('derives the published public keys and shared key', () => {
    const a = new PrivateKey(alicesk);
    const b = new PrivateKey(bobsk);
    expect(toHex(a.publicKey.bytes)).toBe(toHex(alicepk));
    expect(toHex(b.publicKey.bytes)).toBe(toHex(bobpk));
    expect(toHex(SharedKey.compute(a, b.publicKey).bytes)).toBe(firstkey);
    expect(toHex(SharedKey.compute(b, a.publicKey).bytes)).toBe(firstkey);
  });

  it('seals the NaCl box.c vector byte for byte', () => {
    const sealed = box(message, nonce, new PublicKey(bobpk), new PrivateKey(alicesk));
    expect(sealed.length).toBe(message.length + 16);
    expect(toHex(sealed).startsWith(expectedStart)).toBe(true);
    expect(toHex(boxOpen(sealed, nonce, new PublicKey(alicepk), new PrivateKey(bobsk)))).toBe(toHex(message));
  });

  it('matches tweetnacl on random keys, nonces and messages', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 24, maxLength: 24 }),
        fc.uint8Array({ maxLength: 300 }),
        (ska, skb, n, msg) => {
          const a = new PrivateKey(ska);
          const b = new PrivateKey(skb);
          const tk = nacl.box.keyPair.fromSecretKey(Uint8Array.from(skb));
          expect(toHex(a.publicKey.bytes)).toBe(toHex(nacl.box.keyPair.fromSecretKey(Uint8Array.from(ska)).publicKey));
          const ours = box(msg, n, b.publicKey, a);
          const theirs = nacl.box(msg, n, tk.publicKey, a.bytes);
          expect(toHex(ours)).toBe(toHex(theirs));
          expect(toHex(SharedKey.compute(a, b.publicKey).bytes)).toBe(toHex(nacl.box.before(tk.publicKey, a.bytes)));
          const opened = nacl.box.open(ours, n, a.publicKey.bytes, b.bytes);
          expect(opened && toHex(opened)).toBe(toHex(msg));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('rejects a tampered box with BOX_OPEN', () => {
    const a = PrivateKey.generate();
    const b = PrivateKey.generate();
    const sealed = sealTo(a, b.publicKey, new TextEncoder().encode('{"version":2}'));
    expect(new TextDecoder().decode(openFrom(b, a.publicKey, sealed))).toBe('{"version":2}');
    sealed[30]! ^= 1;
    let caught: unknown;
    try {
      openFrom(b, a.publicKey, sealed);
    } catch (e) {
      caught = e;
    }
    expect(isMeshsockError(caught, ErrorCode.BOX_OPEN)).toBe(true);
    expect(
      isMeshsockError(
        (() => {
          try {
            openFrom(b, a.publicKey, sealed.subarray(0, 10));
          } catch (e) {
            return e;
          }
        })(),
        ErrorCode.BOX_OPEN,
      ),
    ).toBe(true);
    expect(SharedKey.compute(b, a.publicKey).tryOpen(sealed.subarray(0, 24), sealed.subarray(24))).toBeUndefined();
  });
});

describe('key text forms', () => {
  it('round-trips nodekey:, discokey: and privkey:', () => {
    const k = PrivateKey.generate();
    expect(PrivateKey.parse(k.toString()).publicKey.equals(k.publicKey)).toBe(true);
    const text = k.publicKey.toString();
    expect(text).toMatch(/^nodekey:[0-9a-f]{64}$/);
    expect(PublicKey.parse(text).equals(k.publicKey)).toBe(true);
    const d = PrivateKey.generate('disco');
    expect(d.publicKey.toString()).toMatch(/^discokey:/);
    expect(PublicKey.parse(d.publicKey.toString()).kind).toBe('disco');
  });

  it('clamps private keys', () => {
    const k = new PrivateKey(new Uint8Array(32).fill(0xff));
    expect(k.bytes[0]! & 7).toBe(0);
    expect(k.bytes[31]! & 0x80).toBe(0);
    expect(k.bytes[31]! & 0x40).toBe(0x40);
  });

  it('rejects malformed key text with BAD_KEY and wrong types with TypeError', () => {
    for (const bad of ['nodekey:', 'nodekey:zz', `nodekey:${'a'.repeat(63)}`, 'hello', `discokey:${'0'.repeat(65)}`]) {
      expect(() => PublicKey.parse(bad)).toThrowError(expect.objectContaining({ code: ErrorCode.BAD_KEY }));
    }
    expect(() => PublicKey.parse(42 as unknown as string)).toThrow(TypeError);
    expect(() => new PublicKey(new Uint8Array(31))).toThrow(RangeError);
  });
});
