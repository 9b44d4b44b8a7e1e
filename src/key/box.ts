/**
 * The NaCl box (`crypto_box`): X25519, then HSalsa20 to derive a shared key ("beforenm"), then XSalsa20-Poly1305
 * with a 24-byte nonce. Output is the 16-byte Poly1305 tag followed by the ciphertext, byte-identical to NaCl,
 * libsodium `crypto_box_easy`, tweetnacl `nacl.box` and Go's `nacl/box` — which Tailscale uses for disco messages
 * and DERP ClientInfo/ServerInfo. Low-rate, so the pure-JS cipher from @noble/ciphers is fine here.
 *
 *   sealed = tag[16] || ciphertext[len(plaintext)]
 *   sealTo output (DERP ClientInfo/ServerInfo) = nonce[24] || sealed
 */
import { hsalsa, xsalsa20poly1305 } from '@noble/ciphers/salsa.js';
import { ErrorCode, MeshsockError } from '../errors.js';
import { abytes } from '../internal/bytes.js';
import { systemRandom, type RandomSource } from '../internal/clock.js';
import type { PrivateKey, PublicKey } from './keys.js';

export const NONCE_LEN = 24;
export const TAG_LEN = 16;
/** Bytes a box adds to its plaintext. */
export const BOX_OVERHEAD = TAG_LEN;

// "expand 32-byte k" as four little-endian words.
const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

function u32le(b: Uint8Array): Uint32Array {
  const out = new Uint32Array(b.length / 4);
  for (let i = 0; i < out.length; i++)
    out[i] = b[i * 4]! | (b[i * 4 + 1]! << 8) | (b[i * 4 + 2]! << 16) | (b[i * 4 + 3]! << 24);
  return out;
}

/** HSalsa20(key, 0^16): turns an X25519 secret into the box key (crypto_box_beforenm). */
export function hsalsa20Zero(secret: Uint8Array): Uint8Array {
  abytes(secret, 'secret', 32);
  const out = new Uint32Array(8);
  hsalsa(SIGMA, u32le(secret), new Uint32Array(4), out);
  const o = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    o[i * 4] = out[i]! & 0xff;
    o[i * 4 + 1] = (out[i]! >>> 8) & 0xff;
    o[i * 4 + 2] = (out[i]! >>> 16) & 0xff;
    o[i * 4 + 3] = (out[i]! >>> 24) & 0xff;
  }
  return o;
}

/** A precomputed box key between one private and one public key (crypto_box_beforenm). Symmetric. */
export class SharedKey {
  readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array) {
    abytes(bytes, 'bytes', 32);
    this.bytes = bytes;
  }

  static compute(mine: PrivateKey, theirs: PublicKey): SharedKey {
    return new SharedKey(hsalsa20Zero(mine.sharedSecret(theirs)));
  }

  /** crypto_box_afternm: returns tag || ciphertext. */
  seal(nonce: Uint8Array, plaintext: Uint8Array): Uint8Array {
    abytes(nonce, 'nonce', NONCE_LEN);
    return xsalsa20poly1305(this.bytes, nonce).encrypt(plaintext);
  }

  /** crypto_box_open_afternm. Throws MeshsockError BOX_OPEN when the box is forged, corrupted or too short. */
  open(nonce: Uint8Array, sealed: Uint8Array): Uint8Array {
    abytes(nonce, 'nonce', NONCE_LEN);
    if (sealed.length < TAG_LEN) throw new MeshsockError(ErrorCode.BOX_OPEN, 'box shorter than its tag');
    try {
      return xsalsa20poly1305(this.bytes, nonce).decrypt(sealed);
    } catch (cause) {
      throw new MeshsockError(ErrorCode.BOX_OPEN, 'box did not open', { cause });
    }
  }

  /** Like `open` but returns undefined instead of throwing; for hot receive paths. */
  tryOpen(nonce: Uint8Array, sealed: Uint8Array): Uint8Array | undefined {
    if (sealed.length < TAG_LEN || nonce.length !== NONCE_LEN) return undefined;
    try {
      return xsalsa20poly1305(this.bytes, nonce).decrypt(sealed);
    } catch {
      return undefined;
    }
  }
}

/** crypto_box: seals `plaintext` from `mine` to `theirs` under `nonce`. */
export function box(plaintext: Uint8Array, nonce: Uint8Array, theirs: PublicKey, mine: PrivateKey): Uint8Array {
  return SharedKey.compute(mine, theirs).seal(nonce, plaintext);
}

/** crypto_box_open. Throws BOX_OPEN on failure. */
export function boxOpen(sealed: Uint8Array, nonce: Uint8Array, theirs: PublicKey, mine: PrivateKey): Uint8Array {
  return SharedKey.compute(mine, theirs).open(nonce, sealed);
}

/** Tailscale's NodePrivate.SealTo: a fresh random nonce, then the box; output nonce || tag || ciphertext. */
export function sealTo(
  mine: PrivateKey,
  theirs: PublicKey,
  plaintext: Uint8Array,
  rng: RandomSource = systemRandom,
): Uint8Array {
  const nonce = rng(NONCE_LEN);
  const sealed = box(plaintext, nonce, theirs, mine);
  const out = new Uint8Array(NONCE_LEN + sealed.length);
  out.set(nonce);
  out.set(sealed, NONCE_LEN);
  return out;
}

/** Tailscale's NodePrivate.OpenFrom: the inverse of sealTo. Throws BOX_OPEN on failure. */
export function openFrom(mine: PrivateKey, theirs: PublicKey, data: Uint8Array): Uint8Array {
  if (data.length < NONCE_LEN + TAG_LEN) throw new MeshsockError(ErrorCode.BOX_OPEN, 'sealed message too short');
  return boxOpen(data.subarray(NONCE_LEN), data.subarray(0, NONCE_LEN), theirs, mine);
}
