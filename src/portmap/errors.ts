/**
 * The typed error of the port mapper. Its `code` is `MESHSOCK_ERR_PORTMAP`; `reason` says what went wrong in a
 * stable word, `protocol` which protocol it was, and `resultCode` the gateway's own code when it sent one
 * (NAT-PMP/PCP result code, UPnP error code or HTTP status). Port-mapping failures are never thrown at the caller:
 * they show in `status().lastError` and on the `portmap` diagnostics channel, and the mapper retries later.
 */
import { ErrorCode, MeshsockError, type MeshsockErrorOptions } from '../errors.js';
import type { PortmapProtocol } from './constants.js';

/** Why a port-mapping attempt failed. */
export const PortmapFailure = {
  /** No protocol answered the probe, or the gateway is not usable. */
  NO_SERVICE: 'no-service',
  /** The gateway answered with an error result (NOT_AUTHORIZED, UPnP fault, …). */
  REFUSED: 'refused',
  /** The gateway stopped answering (request retransmitted until its timeout). */
  NO_ANSWER: 'no-answer',
  /** The answer made no sense (external address 0.0.0.0 or loopback, lifetime 0, no usable UPnP service). */
  BAD_ANSWER: 'bad-answer',
  /** An HTTP request to the UPnP gateway failed (connection, status, timeout). */
  HTTP: 'http',
  /** A mapping expired because it could not be renewed. */
  EXPIRED: 'expired',
} as const;
export type PortmapFailure = (typeof PortmapFailure)[keyof typeof PortmapFailure];

export class PortmapError extends MeshsockError {
  readonly reason: PortmapFailure;
  readonly protocol: PortmapProtocol | undefined;
  readonly resultCode: number | undefined;

  constructor(
    reason: PortmapFailure,
    protocol: PortmapProtocol | undefined,
    message: string,
    resultCode?: number,
    options?: MeshsockErrorOptions,
  ) {
    super(ErrorCode.PORTMAP, protocol ? `${protocol}: ${message}` : message, options);
    this.name = 'PortmapError';
    this.reason = reason;
    this.protocol = protocol;
    this.resultCode = resultCode;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return MeshsockError[Symbol.hasInstance](value) && (value as { name?: unknown }).name === 'PortmapError';
  }
}
