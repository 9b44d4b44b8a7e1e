/**
 * CRC-32/IEEE (reflected polynomial 0xedb88320, init and final XOR 0xffffffff): the checksum under STUN's
 * FINGERPRINT (RFC 8489 §14.7, which points to ITU-T V.42 / ISO 3309). Pure and table-driven, so the codec needs no
 * Node import; tests check it against `node:zlib`'s `crc32`.
 */

const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32/IEEE of `b[start, end)`, as an unsigned 32-bit number. */
export function crc32(b: Uint8Array, start = 0, end = b.length): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
