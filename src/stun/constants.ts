/**
 * STUN constants (RFC 8489), with the values that make our Binding requests wire-compatible with Tailscale's
 * `net/stun` (tailscale-protocols.md §4.1). One table; every value carries its reason.
 */

export const STUN = {
  /** RFC 8489 §5: fixed value at bytes 4-7 that tells STUN from other protocols on the same port. */
  MAGIC_COOKIE: 0x2112a442,
  /** RFC 8489 §5: type u16 + length u16 + cookie u32 + transaction ID (12 bytes). */
  HEADER_LEN: 2 + 2 + 4 + 12,
  /** RFC 8489 §5: 96-bit transaction ID, random per transaction. */
  TXID_LEN: 12,
  /** RFC 8489 §14: attribute header is type u16 + length u16; values are padded to a multiple of 4. */
  ATTR_HEADER_LEN: 2 + 2,
  /** RFC 8489 §14.7: FINGERPRINT is CRC-32 of the message up to it, XOR 0x5354554e ("STUN" in ASCII). */
  FINGERPRINT_XOR: 0x5354554e,
  /** RFC 8489 §14.7: the FINGERPRINT value is one u32. */
  FINGERPRINT_LEN: 4,
  /** RFC 8489 §14.14: SOFTWARE is under 128 characters, at most 763 bytes of UTF-8. */
  MAX_SOFTWARE_BYTES: 763,
  /** RFC 8489 §14.8: the ERROR-CODE reason phrase is under 128 characters, at most 763 bytes of UTF-8. */
  MAX_REASON_BYTES: 763,
  /** RFC 8489 §18.5 (IANA): the default STUN port over UDP. derper and coturn listen here. */
  DEFAULT_PORT: 3478,
  /**
   * SOFTWARE value of our Binding requests. Tailscale's STUN servers (derper, the XDP responder) answer only
   * requests carrying SOFTWARE="tailnode" and ending with FINGERPRINT (tailscale-protocols.md §4.1, §9).
   */
  CLIENT_SOFTWARE: 'tailnode',
  /** SOFTWARE value of our server's responses: names the implementation for packet captures (RFC 8489 §14.14). */
  SERVER_SOFTWARE: 'meshsock',
  /** Tailscale's Binding request: header + SOFTWARE(8) + FINGERPRINT(4), always exactly this long. */
  REQUEST_LEN: 20 + (4 + 8) + (4 + 4),
} as const;

/** RFC 8489 §6.2.1 retransmission over UDP. The client driver and transaction core take these as defaults. */
export const RETRANSMIT = {
  /**
   * Initial RTO. 500 ms is RFC 8489 §6.2.1's recommendation for an unknown path, and it is the safe choice towards
   * third-party STUN servers whose distance we do not know. Callers that probe known servers and want an answer
   * fast (netcheck, MagicSocket re-STUN) pass `FAST_RTO_MS`.
   */
  DEFAULT_RTO_MS: 500,
  /**
   * Initial RTO for netcheck-style probes: Tailscale's netcheck re-sends every 100 ms
   * (`defaultInitialRetransmitTime`, tailscale-protocols.md §4.2). A Binding request is 40 bytes, so the extra
   * copies on a slow path cost nothing worth saving.
   */
  FAST_RTO_MS: 100,
  /** Rc, RFC 8489 §6.2.1: at most 7 transmissions of one request (the first plus 6 retransmissions). */
  MAX_TRANSMISSIONS: 7,
  /** Rm, RFC 8489 §6.2.1: after the last transmission wait 16 × RTO before declaring the transaction failed. */
  LAST_WAIT_FACTOR: 16,
  /** Smallest RTO accepted from a caller: below 1 ms a transaction would spin through its schedule at once. */
  MIN_RTO_MS: 1,
} as const;

/** Message types (method + class, RFC 8489 §5/§6). Only the Binding method exists in plain STUN. */
export const MessageType = {
  BINDING_REQUEST: 0x0001,
  BINDING_INDICATION: 0x0011,
  BINDING_SUCCESS: 0x0101,
  BINDING_ERROR: 0x0111,
} as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

/**
 * Attribute types (IANA "STUN Attributes" registry). 0x0000-0x7fff are comprehension-required, 0x8000-0xffff
 * comprehension-optional (RFC 8489 §14). We decode the ones a Binding client or server needs and keep the rest as
 * raw TLVs.
 */
export const AttrType = {
  /** RFC 8489 §14.1: plain address, kept by old servers; our fallback when XOR-MAPPED-ADDRESS is missing. */
  MAPPED_ADDRESS: 0x0001,
  /** RFC 5780 §7.2: NAT behaviour discovery; our server ignores it. */
  CHANGE_REQUEST: 0x0003,
  /** RFC 8489 §14.3. */
  USERNAME: 0x0006,
  /** RFC 8489 §14.5: HMAC-SHA1; not verified here (Binding to public servers is unauthenticated). */
  MESSAGE_INTEGRITY: 0x0008,
  /** RFC 8489 §14.8: class, number and reason of an error response. */
  ERROR_CODE: 0x0009,
  /** RFC 8489 §14.9: list of u16 types a server did not understand (with error 420). */
  UNKNOWN_ATTRIBUTES: 0x000a,
  /** RFC 8489 §14.9. */
  REALM: 0x0014,
  /** RFC 8489 §14.10. */
  NONCE: 0x0015,
  /** RFC 8489 §14.6. */
  MESSAGE_INTEGRITY_SHA256: 0x001c,
  /** RFC 8489 §14.2: the reflexive address, XOR-ed with the cookie (and the TxID for IPv6). */
  XOR_MAPPED_ADDRESS: 0x0020,
  /** ICE (RFC 8445 §16.1); appears in RFC 5769's sample request. */
  PRIORITY: 0x0024,
  /** Pre-RFC 5389 drafts put XOR-MAPPED-ADDRESS here; some servers still do, and Tailscale accepts it too. */
  XOR_MAPPED_ADDRESS_ALT: 0x8020,
  /** RFC 8489 §14.14: implementation name. */
  SOFTWARE: 0x8022,
  /** RFC 8489 §14.15. */
  ALTERNATE_SERVER: 0x8023,
  /** RFC 8489 §14.7: CRC-32 check; must be the last attribute. */
  FINGERPRINT: 0x8028,
  /** ICE (RFC 8445 §16.1); appears in RFC 5769's sample request. */
  ICE_CONTROLLED: 0x8029,
  /** RFC 5780 §7.3. */
  RESPONSE_ORIGIN: 0x802b,
  /** RFC 5780 §7.4. */
  OTHER_ADDRESS: 0x802c,
} as const;
export type AttrTypeValue = (typeof AttrType)[keyof typeof AttrType];

/** Address family byte inside (XOR-)MAPPED-ADDRESS (RFC 8489 §14.1). */
export const AddressFamily = {
  IPV4: 0x01,
  IPV6: 0x02,
} as const;

/** Error codes a Binding transaction may meet (RFC 8489 §14.8; 487 from RFC 8445). */
export const StunErrorCodes = {
  TRY_ALTERNATE: 300,
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  UNKNOWN_ATTRIBUTE: 420,
  STALE_NONCE: 438,
  ROLE_CONFLICT: 487,
  SERVER_ERROR: 500,
} as const;
