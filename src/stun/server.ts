/**
 * Minimal STUN Binding server (RFC 8489 §6.3): answers every well-formed Binding request — Tailscale's "tailnode"
 * requests and any other RFC 5389/8489 client's — with the source address it came from. Runs beside the DERP server
 * and in nat-lab.
 *
 * `respondToStun` is the pure core: bytes and source address in, response bytes (or nothing) out. It never throws:
 * malformed datagrams and non-Binding-request messages get no answer. Deliberate simplifications, as in
 * Tailscale's stunserver: no authentication (USERNAME / MESSAGE-INTEGRITY are ignored), no 420 for unknown
 * comprehension-required attributes (CHANGE-REQUEST, PRIORITY, ... are ignored and the mapping is returned), no
 * RFC 5780 OTHER-ADDRESS.
 */
import DgramAsPromised, { type SocketAsPromised } from 'dgram-as-promised';
import type { RemoteInfo } from 'node:dgram';
import { type AddrPort, isIPv6, normalizeIp } from '../internal/addr.js';
import { asU8 } from '../internal/bytes.js';
import { Counters, channels, publish } from '../internal/diagnostics.js';
import { MessageType, STUN } from './constants.js';
import { decodeMessage, encodeBindingSuccess, isStun } from './message.js';

/** Why `classifyStun` declined a datagram. */
export type StunServerDrop = 'malformed' | 'not-binding';

/** Counter names of a StunServer. */
export type StunServerCounter = 'answered' | 'droppedMalformed' | 'droppedNotBinding' | 'sendErrors';

/**
 * The response to a received datagram, or why there is none. Never throws.
 */
export function classifyStun(
  bytes: Uint8Array,
  from: AddrPort,
): { response: Uint8Array; drop?: undefined } | { response?: undefined; drop: StunServerDrop } {
  if (!isStun(bytes)) return { drop: 'malformed' };
  let msg;
  try {
    msg = decodeMessage(asU8(bytes));
  } catch {
    // decodeMessage throws only DecodeError; whatever it is, the datagram gets no answer.
    return { drop: 'malformed' };
  }
  if (msg.type !== MessageType.BINDING_REQUEST) return { drop: 'not-binding' };
  try {
    return { response: encodeBindingSuccess(msg.txId, from) };
  } catch {
    // Only a bad `from` (not an IP, port out of range) lands here.
    return { drop: 'malformed' };
  }
}

/** Pure responder: the Binding success for a Binding request from `from`, else undefined. Never throws. */
export function respondToStun(bytes: Uint8Array, from: AddrPort): Uint8Array | undefined {
  return classifyStun(bytes, from).response;
}

export interface StunServerListenOptions {
  /** Address to bind, e.g. "127.0.0.1" or "::1". Default "0.0.0.0". An IPv6 host opens an IPv6-only socket. */
  host?: string;
  /** Port to bind. Default 3478; 0 picks a free port (read it back from `.address`). */
  port?: number;
}

/** A UDP STUN server on one socket. Counters: answered, droppedMalformed, droppedNotBinding, sendErrors. */
export class StunServer {
  readonly counters = new Counters<StunServerCounter>();
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly socket: SocketAsPromised,
    /** The bound address (with the real port when 0 was asked). */
    readonly address: AddrPort,
  ) {}

  /** Binds and starts answering. Rejects with the bind error (e.g. EADDRINUSE). */
  static async listen(opts: StunServerListenOptions = {}): Promise<StunServer> {
    const host = opts.host ?? '0.0.0.0';
    const v6 = isIPv6(host);
    let server: StunServer | undefined;
    const socket = DgramAsPromised.createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: v6 }, (msg, rinfo) =>
      server?.onMessage(msg, rinfo),
    );
    try {
      const bound = await socket.bind(opts.port ?? STUN.DEFAULT_PORT, host);
      server = new StunServer(socket, { ip: normalizeIp(bound.address), port: bound.port });
      return server;
    } catch (err) {
      await socket.close().catch(() => undefined);
      throw err;
    }
  }

  /** Plain snapshot of the counters. */
  stats(): { answered: number; droppedMalformed: number; droppedNotBinding: number; sendErrors: number } {
    const c = this.counters;
    return {
      answered: c.get('answered'),
      droppedMalformed: c.get('droppedMalformed'),
      droppedNotBinding: c.get('droppedNotBinding'),
      sendErrors: c.get('sendErrors'),
    };
  }

  /** Stops answering and closes the socket. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.socket.close().catch(() => undefined);
    return this.closing;
  }

  private onMessage(msg: Uint8Array, rinfo: RemoteInfo): void {
    if (this.closing) return;
    let from: AddrPort;
    try {
      from = { ip: normalizeIp(rinfo.address), port: rinfo.port };
    } catch {
      this.counters.inc('droppedMalformed');
      return;
    }
    const r = classifyStun(msg, from);
    if (!r.response) {
      this.counters.inc(r.drop === 'malformed' ? 'droppedMalformed' : 'droppedNotBinding');
      publish(channels.drop, () => ({ where: 'stun/server', reason: r.drop }));
      return;
    }
    this.counters.inc('answered');
    this.socket.send(r.response, rinfo.port, rinfo.address).catch(() => this.counters.inc('sendErrors'));
  }
}
