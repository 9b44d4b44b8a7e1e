import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { encodeDiscoMessage, type DiscoMessage } from '../../src/disco/message.js';
import { DecodeError } from '../../src/errors.js';
import { formatAddrPort, parseAddrPort } from '../../src/internal/addr.js';
import { toHex } from '../../src/internal/bytes.js';
import { SharedKey } from '../../src/key/box.js';
import { PrivateKey } from '../../src/key/keys.js';
import {
  SIGNAL_MAGIC,
  isSignalEnvelope,
  openSignal,
  sealSignal,
  signalSender,
  type SignalContent,
} from '../../src/signal/envelope.js';

const alice = PrivateKey.generate();
const bob = PrivateKey.generate();
const eve = PrivateKey.generate();
const aliceDisco = PrivateKey.generate('disco').publicKey.bytes;
const bobDisco = PrivateKey.generate('disco').publicKey.bytes;
const ab = SharedKey.compute(alice, bob.publicKey); // alice's side
const ba = SharedKey.compute(bob, alice.publicKey); // bob's side (same key: the box key is symmetric)
const eb = SharedKey.compute(eve, bob.publicKey);

const cmm: DiscoMessage = {
  type: 'callMeMaybe',
  endpoints: [parseAddrPort('198.51.100.7:41641'), parseAddrPort('[2001:db8::5]:41641')],
};
const content: SignalContent = { senderDisco: aliceDisco, knownReceiverDisco: bobDisco, message: cmm };
const fixedNonce = (n: number) => new Uint8Array(n).fill(0x24);

/**
 * The envelope key computed independently of src/: tweetnacl's box key (crypto_box_beforenm) of the node keys, then
 * noble's HMAC-SHA256 with the envelope's context label.
 */
const envKey = hmac(
  sha256,
  nacl.box.before(bob.publicKey.bytes, alice.bytes),
  new TextEncoder().encode('meshsock v1 signal envelope'),
);

/** Seals arbitrary plaintext as an envelope from alice to bob (for malformed-content cases the API cannot produce). */
function rawEnvelope(plain: Uint8Array): Uint8Array {
  const nonce = fixedNonce(24);
  const sealed = nacl.secretbox(plain, nonce, envKey);
  return new Uint8Array([...SIGNAL_MAGIC, ...alice.publicKey.bytes, ...nonce, ...sealed]);
}

/** Plaintext as alice's side lays it out: her node key, then `rest`. */
const fromAlice = (...rest: Uint8Array[]) => new Uint8Array([...alice.publicKey.bytes, ...rest.flatMap((r) => [...r])]);

describe('signal envelope: layout and round trip', () => {
  it('is magic "MS📡", sender node key, nonce, secretbox of senderNode‖senderDisco‖knownReceiverDisco‖disco message', () => {
    const env = sealSignal(alice.publicKey.bytes, ab, content, fixedNonce);
    const inner = encodeDiscoMessage(cmm);
    expect(env.length).toBe(6 + 32 + 24 + 16 + 96 + inner.length);
    expect(toHex(env.subarray(0, 6))).toBe('4d53f09f93a1');
    expect(new TextDecoder().decode(env.subarray(0, 6))).toBe('MS📡');
    expect(toHex(env.subarray(6, 38))).toBe(alice.publicKey.hex);
    expect(toHex(env.subarray(38, 62))).toBe('24'.repeat(24));
    // Independent check with tweetnacl and noble: secretbox under HMAC-SHA256(box key, context label) ...
    const plain = nacl.secretbox.open(env.subarray(62), env.subarray(38, 62), envKey);
    expect(plain && toHex(plain)).toBe(toHex(fromAlice(aliceDisco, bobDisco, inner)));
    // ... and never the plain node-key box, which Tailscale's formats (DERP ClientInfo) use.
    expect(nacl.box.open(env.subarray(62), env.subarray(38, 62), alice.publicKey.bytes, bob.bytes)).toBeNull();
    expect(toHex(signalSender(env)!)).toBe(alice.publicKey.hex);
  });

  it('opens on the receiver side with the same content', () => {
    const env = sealSignal(alice.publicKey.bytes, ab, content);
    expect(openSignal(env, ba)).toEqual(content);
  });

  it('an unknown receiver disco key travels as zeros and opens as undefined', () => {
    const env = sealSignal(alice.publicKey.bytes, ab, { ...content, knownReceiverDisco: undefined }, fixedNonce);
    const plain = nacl.secretbox.open(env.subarray(62), env.subarray(38, 62), envKey)!;
    expect(toHex(plain.subarray(64, 96))).toBe('00'.repeat(32));
    expect(openSignal(env, ba)!.knownReceiverDisco).toBeUndefined();
  });

  it('opens an envelope built with tweetnacl and noble alone', () => {
    const nonce = new Uint8Array(24).fill(3);
    const inner = encodeDiscoMessage(cmm);
    const box = nacl.secretbox(fromAlice(aliceDisco, bobDisco, inner), nonce, envKey);
    const env = new Uint8Array([...SIGNAL_MAGIC, ...alice.publicKey.bytes, ...nonce, ...box]);
    expect(openSignal(env, ba)).toEqual(content);
  });

  it('round-trips any endpoint list and keys (property)', () => {
    const ip = fc.oneof(fc.ipV4(), fc.ipV6());
    fc.assert(
      fc.property(
        fc.array(fc.record({ ip, port: fc.integer({ min: 0, max: 65535 }) }), { maxLength: 20 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.option(fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((k) => k.some((x) => x !== 0))),
        (eps, senderDisco, known) => {
          const endpoints = eps.map((e) => parseAddrPort(formatAddrPort(e)));
          const c: SignalContent = {
            senderDisco,
            knownReceiverDisco: known ?? undefined,
            message: { type: 'callMeMaybe', endpoints },
          };
          const opened = openSignal(sealSignal(alice.publicKey.bytes, ab, c), ba);
          expect(opened).toEqual(c);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('signal envelope: wrong keys and tampering', () => {
  const env = sealSignal(alice.publicKey.bytes, ab, content);

  it('does not open with the wrong keys', () => {
    expect(openSignal(env, eb)).toBeUndefined(); // eve ↔ bob
    expect(openSignal(env, SharedKey.compute(bob, eve.publicKey))).toBeUndefined(); // bob thinks it is from eve
    expect(openSignal(env, SharedKey.compute(eve, alice.publicKey))).toBeUndefined(); // eve intercepting
  });

  it('eve cannot forge one from alice: sealed with her own key under alice’s name it does not open', () => {
    const forged = sealSignal(alice.publicKey.bytes, eb, content);
    expect(toHex(signalSender(forged)!)).toBe(alice.publicKey.hex);
    expect(openSignal(forged, ba)).toBeUndefined();
  });

  it('any flipped bit in the nonce or box makes it not open; a flipped magic makes it not an envelope', () => {
    for (let i = 0; i < env.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const t = env.slice();
        t[i]! ^= bit;
        if (i < 6) {
          expect(isSignalEnvelope(t)).toBe(false);
          expect(() => openSignal(t, ba)).toThrow(DecodeError);
        } else if (i < 38) {
          // The sender field only selects the key: a different sender means a different key, which cannot open it.
          expect(toHex(signalSender(t)!)).not.toBe(alice.publicKey.hex);
        } else expect(openSignal(t, ba), `byte ${i} bit ${bit}`).toBeUndefined();
      }
    }
  });

  it('an envelope whose sender inside is not the sender in the header does not open (no turning around)', () => {
    // bob's box key with alice is alice's with bob: alice's envelope, relabelled as bob's, would open at alice.
    const turned = env.slice();
    turned.set(bob.publicKey.bytes, 6);
    expect(openSignal(turned, SharedKey.compute(alice, bob.publicKey))).toBeUndefined();
    const inner = encodeDiscoMessage(cmm);
    expect(
      openSignal(rawEnvelope(new Uint8Array([...bob.publicKey.bytes, ...aliceDisco, ...bobDisco, ...inner])), ba),
    ).toBeUndefined();
  });

  it('a box of the same plaintext under the plain node-key box key (the old format) does not open', () => {
    const inner = encodeDiscoMessage(cmm);
    const nonce = fixedNonce(24);
    for (const plain of [
      new Uint8Array([...aliceDisco, ...bobDisco, ...inner]),
      fromAlice(aliceDisco, bobDisco, inner),
    ]) {
      const box = nacl.box(plain, nonce, bob.publicKey.bytes, alice.bytes);
      const env2 = new Uint8Array([...SIGNAL_MAGIC, ...alice.publicKey.bytes, ...nonce, ...box]);
      expect(openSignal(env2, ba)).toBeUndefined();
    }
  });

  it('truncated envelopes never open', () => {
    for (let n = 0; n < env.length; n++) {
      const t = env.subarray(0, n);
      if (!isSignalEnvelope(t)) expect(() => openSignal(t, ba)).toThrow(DecodeError);
      else expect(openSignal(t, ba)).toBeUndefined();
    }
  });
});

describe('signal envelope: malformed content is a DecodeError, never anything else', () => {
  const table: Array<[string, Uint8Array]> = [
    ['empty plaintext', new Uint8Array(0)],
    ['shorter than three keys and a header', fromAlice(new Uint8Array(65))],
    ['unknown disco message type', fromAlice(new Uint8Array(64), new Uint8Array([0x7f, 0]))],
    ['a pong too short for its address', fromAlice(new Uint8Array(64), new Uint8Array([0x02, 0]), new Uint8Array(20))],
    ['a ping too short for its TxID', fromAlice(new Uint8Array(64), new Uint8Array([0x01, 0, 1, 2, 3]))],
  ];
  it.each(table)('%s → DecodeError', (_name, plain) => {
    const env = rawEnvelope(plain);
    expect(() => openSignal(env, ba)).toThrow(DecodeError);
  });

  it('a CallMeMaybe of a length that is not a multiple of 18 opens with no endpoints (Tailscale is lax)', () => {
    const env = rawEnvelope(fromAlice(aliceDisco, bobDisco, new Uint8Array([0x03, 0]), new Uint8Array(19)));
    expect(openSignal(env, ba)!.message).toEqual({ type: 'callMeMaybe', endpoints: [] });
  });

  it('random bytes: isSignalEnvelope / signalSender never throw; openSignal returns undefined or throws DecodeError (property)', () => {
    const withMagic = fc.uint8Array({ maxLength: 300 }).map((b) => new Uint8Array([...SIGNAL_MAGIC, ...b]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), withMagic), (b) => {
        const is = isSignalEnvelope(b);
        expect(is).toBe(b.length >= 78 && toHex(b.subarray(0, 6)) === toHex(SIGNAL_MAGIC));
        expect(signalSender(b)?.length).toBe(is ? 32 : undefined);
        try {
          expect(openSignal(b, ba)).toBeUndefined();
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('any plaintext under a valid box: content or DecodeError, never another exception (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 255 }), (tail, type) => {
        const plain = fromAlice(aliceDisco, bobDisco, new Uint8Array([type]), tail);
        try {
          const c = openSignal(rawEnvelope(plain), ba);
          expect(c).toBeDefined();
          expect(['ping', 'pong', 'callMeMaybe']).toContain(c!.message.type);
        } catch (err) {
          expect(err).toBeInstanceOf(DecodeError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
