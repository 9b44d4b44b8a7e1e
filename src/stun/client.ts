/**
 * STUN Binding client driver over a socket it does not own. MagicSocket owns one UDP socket per address family
 * (DESIGN.md decision 2), so the STUN-observed mapping is the data flow's mapping: the client sends through the
 * `send` callback it is given, and the socket's owner hands every received STUN datagram (`isStun(b)`) to
 * `handlePacket`. All protocol state lives in the sans-IO `StunTransactions`; this driver adds promises,
 * AbortSignals and its one DriverTimer.
 *
 * `stunQuery()` is the convenience for tools and tests that opens, uses and closes its own UDP socket.
 */
import DgramAsPromised from 'dgram-as-promised';
import { ErrorCode, MeshsockError, abortError, throwIfAborted } from '../errors.js';
import { type AddrPort, formatAddrPort, isIPv6, normalizeIp, parseAddrPort } from '../internal/addr.js';
import { asU8, toHex } from '../internal/bytes.js';
import { type Clock, DriverTimer, type RandomSource, systemClock } from '../internal/clock.js';
import { channels, publish } from '../internal/diagnostics.js';
import { RETRANSMIT } from './constants.js';
import { isStun } from './message.js';
import {
  type StunTransactionAction,
  type StunTransactionOptions,
  type StunTransactionResult,
  StunTransactions,
} from './transaction.js';

/** Sends one datagram on the owner's socket. A throw or a rejected promise counts as a failed send. */
export type StunSend = (bytes: Uint8Array, to: AddrPort) => void | Promise<unknown>;

export interface StunClientOptions {
  /** How to put a datagram on the wire (the owner's socket). */
  send: StunSend;
  /** Time source; `systemClock` by default, a FakeClock in tests. */
  clock?: Clock;
  /** Transaction ID source; crypto random by default. */
  rng?: RandomSource;
  /** Default initial RTO for queries (ms). Default 500 (RFC 8489); netcheck-style callers pass 100. */
  rtoMs?: number;
  /** Default Rc (transmissions per query). Default 7. */
  maxTransmissions?: number;
  /** Default Rm (last wait, in initial RTOs). Default 16. */
  lastWaitFactor?: number;
}

export interface StunQueryOptions {
  /** Aborts the query: it rejects with ABORTED and its transaction is forgotten. */
  signal?: AbortSignal;
  /** Overall deadline from now (ms); the query rejects with TIMEOUT when it passes. Default: none (the RFC
   * schedule alone ends it, after 79 × RTO with the default Rc/Rm). */
  timeoutMs?: number;
  /** Initial RTO for this query (ms), overriding the client's. */
  rtoMs?: number;
  /** Rc for this query, overriding the client's. */
  maxTransmissions?: number;
}

/** A successful query. */
export interface StunQueryResult {
  /** Our reflexive transport address as the server saw it. */
  readonly mapped: AddrPort;
  /** First transmission to answer, in ms (never an underestimate). */
  readonly rttMs: number;
  /** The server asked. */
  readonly server: AddrPort;
  /** Where the answer came from: always `server` (answers from elsewhere are dropped). */
  readonly from: AddrPort;
  /** Copies sent before the answer came; 1 means the RTT sample is unambiguous. */
  readonly transmissions: number;
}

interface Pending {
  resolve(r: StunQueryResult): void;
  reject(e: unknown): void;
  cleanup(): void;
}

/**
 * STUN Binding client on a borrowed socket. Create one per socket (per address family); close it with the socket.
 */
export class StunClient {
  /** Transaction-level counters (started, retransmits, succeeded, droppedUnknownTx, droppedWrongSource, ...). */
  readonly transactions: StunTransactions;
  private readonly send: StunSend;
  private readonly clock: Clock;
  private readonly timer: DriverTimer;
  private readonly pending = new Map<string, Pending>();
  private closed = false;
  private sendErrorCount = 0;

  constructor(opts: StunClientOptions) {
    if (typeof opts?.send !== 'function') throw new TypeError('"send" must be a function');
    this.send = opts.send;
    this.clock = opts.clock ?? systemClock;
    const defaults: StunTransactionOptions = {};
    if (opts.rtoMs !== undefined) defaults.rtoMs = opts.rtoMs;
    if (opts.maxTransmissions !== undefined) defaults.maxTransmissions = opts.maxTransmissions;
    if (opts.lastWaitFactor !== undefined) defaults.lastWaitFactor = opts.lastWaitFactor;
    this.transactions = new StunTransactions(opts.rng ? { rng: opts.rng, defaults } : { defaults });
    this.timer = new DriverTimer(this.clock, () => this.onTimer());
  }

  /** Queries still waiting for an answer. */
  get pendingQueries(): number {
    return this.pending.size;
  }

  /** Sends that threw or rejected (each is retried by the schedule; the query fails only when it runs out). */
  get sendErrors(): number {
    return this.sendErrorCount;
  }

  /**
   * Asks `server` for our mapped address. Resolves with the mapping and RTT; rejects with a MeshsockError:
   * STUN (StunResponseError for an error response, or no answer after every retransmission), TIMEOUT
   * (`timeoutMs` passed), ABORTED (`signal`), CLOSED (client closed).
   */
  query(server: AddrPort, opts: StunQueryOptions = {}): Promise<StunQueryResult> {
    if (this.closed) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'STUN client is closed'));
    try {
      throwIfAborted(opts.signal);
    } catch (err) {
      return Promise.reject(err);
    }
    const now = this.clock.now();
    const txOpts: StunTransactionOptions = {};
    if (opts.rtoMs !== undefined) txOpts.rtoMs = opts.rtoMs;
    if (opts.maxTransmissions !== undefined) txOpts.maxTransmissions = opts.maxTransmissions;
    if (opts.timeoutMs !== undefined) {
      if (!(opts.timeoutMs >= 0)) return Promise.reject(new RangeError('"timeoutMs" must be >= 0'));
      txOpts.deadline = now + opts.timeoutMs;
    }
    let started: { txId: Uint8Array; bytes: Uint8Array };
    try {
      started = this.transactions.start(server, now, txOpts);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = toHex(started.txId);
    const promise = new Promise<StunQueryResult>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = (): void => {
        if (!this.pending.has(key)) return;
        this.transactions.cancel(started.txId);
        this.settle(key, undefined, abortError(signal!), server);
        this.rearm();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(key, { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) });
    });
    this.transmit(started.bytes, server);
    this.rearm();
    return promise;
  }

  /**
   * Feeds a STUN datagram received on the owner's socket. Returns true when it answered one of our queries;
   * anything else (malformed, not a response, unknown or late transaction) is dropped and counted.
   */
  handlePacket(bytes: Uint8Array, from: AddrPort): boolean {
    if (this.closed || !isStun(bytes)) return false;
    const res = this.transactions.handleResponse(asU8(bytes), from, this.clock.now());
    if (!res) return false;
    this.finish(res);
    this.rearm();
    return true;
  }

  /** Rejects every pending query with CLOSED and stops the timer. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.timer.stop();
    this.transactions.clear();
    for (const [key] of [...this.pending]) {
      this.settle(key, undefined, new MeshsockError(ErrorCode.CLOSED, 'STUN client closed'), undefined);
    }
  }

  private onTimer(): void {
    if (this.closed) return;
    const actions: StunTransactionAction[] = this.transactions.handleTimeout(this.clock.now());
    for (const a of actions) {
      if (a.kind === 'send') this.transmit(a.bytes, a.to);
      else this.finish(a.result);
    }
    this.rearm();
  }

  private finish(res: StunTransactionResult): void {
    const key = toHex(res.txId);
    if (res.ok) {
      const { mapped, rttMs, server, from, transmissions } = res;
      this.settle(key, { mapped, rttMs, server, from, transmissions }, undefined, server);
    } else {
      this.settle(key, undefined, res.error, res.server);
    }
  }

  private settle(key: string, ok: StunQueryResult | undefined, err: unknown, server: AddrPort | undefined): void {
    const p = this.pending.get(key);
    if (!p) return;
    this.pending.delete(key);
    p.cleanup();
    if (ok) {
      publish(channels.stun, () => ({
        server: formatAddrPort(ok.server),
        mapped: formatAddrPort(ok.mapped),
        rttMs: ok.rttMs,
      }));
      p.resolve(ok);
    } else {
      publish(channels.stun, () => ({ server: server && formatAddrPort(server), error: err }));
      p.reject(err);
    }
  }

  private transmit(bytes: Uint8Array, to: AddrPort): void {
    const onError = (): void => {
      this.sendErrorCount++;
    };
    try {
      const r = this.send(bytes, to);
      if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(undefined, onError);
    } catch {
      onError();
    }
  }

  private rearm(): void {
    if (this.closed) return;
    this.timer.armAt(this.transactions.pollTimeout());
  }
}

/** Options of the standalone `stunQuery`. */
export interface StandaloneStunQueryOptions {
  /** The STUN server, as an AddrPort or "ip:port" ("[::1]:3478"). No DNS: tools resolve names first. */
  server: AddrPort | string;
  /** Socket family; by default the server address's family. */
  family?: 4 | 6;
  /** Local address to bind (default: all interfaces of the family). */
  bindAddress?: string;
  /** Local port to bind (default: any). */
  bindPort?: number;
  signal?: AbortSignal;
  /** Overall deadline (ms). Default 5000, Tailscale's whole-report timeout (tailscale-protocols.md §4.2). */
  timeoutMs?: number;
  /** Initial RTO (ms). Default `RETRANSMIT.FAST_RTO_MS` (100): a tool wants its answer fast. */
  rtoMs?: number;
}

/**
 * One Binding query on a fresh UDP socket of its own, closed before this returns (tools, tests, examples; not the
 * hot path). Resolves with the query result plus the local address the socket was bound to.
 */
export async function stunQuery(opts: StandaloneStunQueryOptions): Promise<StunQueryResult & { local: AddrPort }> {
  const server = typeof opts.server === 'string' ? parseAddrPort(opts.server) : opts.server;
  const family = opts.family ?? (isIPv6(server.ip) ? 6 : 4);
  throwIfAborted(opts.signal);
  // An IPv4 server over an IPv6 socket is addressed IPv4-mapped; AddrPort values stay unmapped.
  const wireIp = (ip: string): string => (family === 6 && !isIPv6(ip) ? `::ffff:${ip}` : ip);
  const client = new StunClient({
    send: (bytes, to) => socket.send(bytes, to.port, wireIp(to.ip)),
    rtoMs: opts.rtoMs ?? RETRANSMIT.FAST_RTO_MS,
  });
  const socket = DgramAsPromised.createSocket({ type: family === 6 ? 'udp6' : 'udp4' }, (msg, rinfo) => {
    if (isStun(msg)) client.handlePacket(msg, { ip: normalizeIp(rinfo.address), port: rinfo.port });
  });
  try {
    const bound = await socket.bind(opts.bindPort ?? 0, opts.bindAddress ?? (family === 6 ? '::' : '0.0.0.0'));
    const q: StunQueryOptions = { timeoutMs: opts.timeoutMs ?? 5_000 };
    if (opts.signal) q.signal = opts.signal;
    const res = await client.query(server, q);
    return { ...res, local: { ip: normalizeIp(bound.address), port: bound.port } };
  } finally {
    client.close();
    await socket.close().catch(() => undefined);
  }
}
