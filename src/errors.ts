/**
 * Typed errors with stable codes.
 *
 * Every error meshsock throws or rejects with is a `MeshsockError` whose `code` is one of `ErrorCode`; match on
 * `err.code`, never on the message. `instanceof MeshsockError` works across two installed copies of the package
 * because the class checks a `Symbol.for` brand. Malformed wire input raises `DecodeError`, which also records
 * where in the message decoding failed (`where`, e.g. `disco/pong`) and the byte offset.
 *
 * Bad arguments from the caller are `TypeError` / `RangeError` naming the argument, as in Node itself.
 */

const BRAND = Symbol.for('meshsock.error');

/** Every stable error code, with what it means. Listed in README "Errors". */
export const ErrorCode = {
  /** Wire input too short, wrong magic, bad length or otherwise unparseable. */
  DECODE: 'MESHSOCK_ERR_DECODE',
  /** A NaCl box did not open: wrong key, forged or corrupted. */
  BOX_OPEN: 'MESHSOCK_ERR_BOX_OPEN',
  /** A key in text form is not `nodekey:`/`discokey:` + 64 hex digits. */
  BAD_KEY: 'MESHSOCK_ERR_BAD_KEY',
  /** A configuration value is missing or out of range. */
  BAD_CONFIG: 'MESHSOCK_ERR_BAD_CONFIG',
  /** An operation waited longer than its deadline. */
  TIMEOUT: 'MESHSOCK_ERR_TIMEOUT',
  /** The object was closed; the operation cannot proceed. */
  CLOSED: 'MESHSOCK_ERR_CLOSED',
  /** The operation was aborted by its AbortSignal. */
  ABORTED: 'MESHSOCK_ERR_ABORTED',
  /** The peer is not known to this socket (call addPeer first). */
  UNKNOWN_PEER: 'MESHSOCK_ERR_UNKNOWN_PEER',
  /** No path to the peer exists (no direct path and no relay). */
  NO_PATH: 'MESHSOCK_ERR_NO_PATH',
  /** A datagram is larger than the transport can carry. */
  TOO_LARGE: 'MESHSOCK_ERR_TOO_LARGE',
  /** The remote side broke the protocol (unexpected frame, bad handshake). */
  PROTOCOL: 'MESHSOCK_ERR_PROTOCOL',
  /** A STUN transaction failed (error response or no answer after all retransmissions). */
  STUN: 'MESHSOCK_ERR_STUN',
  /** Binding a UDP socket failed. */
  BIND: 'MESHSOCK_ERR_BIND',
  /** A DERP server refused the client (admission hook said no). */
  DERP_DENIED: 'MESHSOCK_ERR_DERP_DENIED',
  /** Connecting to a DERP server failed (every node of the region). */
  DERP_CONNECT: 'MESHSOCK_ERR_DERP_CONNECT',
  /** A signalling channel failed to deliver. */
  SIGNAL: 'MESHSOCK_ERR_SIGNAL',
  /** A system command (lab, TUN) failed. */
  COMMAND: 'MESHSOCK_ERR_COMMAND',
  /** A WireGuard message failed authentication, replay or session checks. */
  WIREGUARD: 'MESHSOCK_ERR_WIREGUARD',
  /** Port mapping failed: the gateway offers no NAT-PMP/PCP/UPnP, refused, or did not answer (see PortmapError). */
  PORTMAP: 'MESHSOCK_ERR_PORTMAP',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface MeshsockErrorOptions {
  cause?: unknown;
}

export class MeshsockError extends Error {
  readonly code: ErrorCode;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options?: MeshsockErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.name = 'MeshsockError';
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}

/** Malformed wire input. `where` names the codec and field (`stun/attr/XOR-MAPPED-ADDRESS`), `offset` the byte. */
export class DecodeError extends MeshsockError {
  readonly where: string;
  readonly offset: number;

  constructor(where: string, message: string, offset = 0, options?: MeshsockErrorOptions) {
    super(ErrorCode.DECODE, `${where}: ${message}`, options);
    this.name = 'DecodeError';
    this.where = where;
    this.offset = offset;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return MeshsockError[Symbol.hasInstance](value) && (value as { name?: unknown }).name === 'DecodeError';
  }
}

/** True when `err` is a MeshsockError carrying `code`. */
export function isMeshsockError(err: unknown, code?: ErrorCode): err is MeshsockError {
  return err instanceof MeshsockError && (code === undefined || err.code === code);
}

/** An `ABORTED` error carrying the signal's reason as its cause. */
export function abortError(signal: AbortSignal): MeshsockError {
  return new MeshsockError(ErrorCode.ABORTED, 'operation aborted', { cause: signal.reason });
}

/** Throws `ABORTED` if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
