export { PrivateKey, PublicKey, clamp, KEY_LEN, type KeyKind } from './keys.js';
export { SharedKey, box, boxOpen, sealTo, openFrom, hsalsa20Zero, NONCE_LEN, TAG_LEN, BOX_OVERHEAD } from './box.js';
