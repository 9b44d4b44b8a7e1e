/**
 * The typed error a Binding transaction rejects with when the server answers with an error response (0x0111).
 * Its `code` is `MESHSOCK_ERR_STUN`, like every other failed STUN transaction; the STUN error itself is in
 * `stunCode` / `errorClass` / `errorNumber` / `reason`.
 */
import { ErrorCode, MeshsockError } from '../errors.js';
import { type AddrPort, formatAddrPort } from '../internal/addr.js';
import type { StunErrorInfo } from './attributes.js';

export class StunResponseError extends MeshsockError implements StunErrorInfo {
  readonly stunCode: number;
  readonly errorClass: number;
  readonly errorNumber: number;
  readonly reason: string;
  readonly unknownAttributes?: readonly number[];
  /** The server that answered. */
  readonly server: AddrPort;

  constructor(info: StunErrorInfo, server: AddrPort) {
    super(
      ErrorCode.STUN,
      `STUN server ${formatAddrPort(server)} answered error ${info.stunCode} ${info.reason}`.trim(),
    );
    this.name = 'StunResponseError';
    this.stunCode = info.stunCode;
    this.errorClass = info.errorClass;
    this.errorNumber = info.errorNumber;
    this.reason = info.reason;
    if (info.unknownAttributes !== undefined) this.unknownAttributes = info.unknownAttributes;
    this.server = server;
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return MeshsockError[Symbol.hasInstance](value) && (value as { name?: unknown }).name === 'StunResponseError';
  }
}
