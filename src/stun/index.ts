/**
 * STUN: Binding codec wire-compatible with Tailscale's netcheck requests, the sans-IO transaction table with
 * RFC 8489 retransmission, a client driver over a borrowed socket, and a minimal Binding server.
 */
export { AddressFamily, AttrType, MessageType, RETRANSMIT, STUN, StunErrorCodes } from './constants.js';
export type { AttrTypeValue, MessageTypeValue } from './constants.js';
export { crc32 } from './crc32.js';
export {
  ADDRESS_V4_LEN,
  ADDRESS_V6_LEN,
  type StunErrorInfo,
  addressValueLen,
  checkPort,
  decodeAddressValue,
  decodeErrorCodeValue,
  decodeText,
  decodeUnknownAttributesValue,
  encodeAddressValueInto,
  encodeErrorCodeValue,
  encodeSoftwareValue,
  encodeUnknownAttributesValue,
  ipToWire,
  writeAddressValue,
} from './attributes.js';
export {
  type AttrToEncode,
  type BindingRequest,
  type BindingResponse,
  type StunAttr,
  type StunMessage,
  decodeBindingRequest,
  decodeBindingResponse,
  decodeMessage,
  encodeBindingError,
  encodeBindingRequest,
  encodeBindingSuccess,
  encodeMessage,
  getAttr,
  isStun,
} from './message.js';
export { StunResponseError } from './errors.js';
export {
  type StunTransactionAction,
  type StunTransactionCounter,
  type StunTransactionOptions,
  type StunTransactionResult,
  StunTransactions,
} from './transaction.js';
export {
  type StandaloneStunQueryOptions,
  type StunClientOptions,
  type StunQueryOptions,
  type StunQueryResult,
  type StunSend,
  StunClient,
  stunQuery,
} from './client.js';
export {
  type StunServerCounter,
  type StunServerDrop,
  type StunServerListenOptions,
  StunServer,
  classifyStun,
  respondToStun,
} from './server.js';
