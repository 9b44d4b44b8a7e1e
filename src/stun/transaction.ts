/**
 * Sans-IO table of outstanding STUN Binding transactions, keyed by transaction ID, with RFC 8489 §6.2.1
 * retransmission over UDP. No sockets, no timers: `now` (monotonic ms) goes in, bytes to send and results come out.
 *
 * Schedule for one transaction with initial RTO `r`, Rc transmissions and last-wait factor Rm (defaults 7 and 16):
 *
 *   send #1 at t0, #2 at t0 + r, #3 at t0 + 3r, #4 at t0 + 7r, ... #k at t0 + (2^(k-1) - 1)·r   (k ≤ Rc)
 *   failed at (time of send #Rc) + Rm·r
 *
 * With r = 500 ms: sends at 0, 500, 1500, 3500, 7500, 15500, 31500 ms, failure at 39500 ms (RFC 8489's own example).
 * An optional absolute `deadline` ends the transaction earlier with a TIMEOUT error.
 *
 * A response is taken only when its transaction ID (a 96-bit random value) is outstanding AND it comes from the
 * address and port the request went to: anyone who sees a request on the path could otherwise answer it first, from
 * anywhere, with an address of their choosing as our "public endpoint". A reply from elsewhere is dropped and
 * counted (`droppedWrongSource`) and the transaction keeps waiting for the real one. Replies with an unknown ID
 * (late duplicates, strays) and malformed replies are dropped and counted, never thrown.
 *
 * RTT is measured from the first transmission, so it never underestimates (a late answer to an earlier copy would
 * make "time since the last copy" too small). `transmissions > 1` marks a sample that a latency estimator may
 * prefer to discard (Karn's rule).
 */
import { DecodeError, ErrorCode, MeshsockError } from '../errors.js';
import { type AddrPort, formatAddrPort, normalizeIp } from '../internal/addr.js';
import { toHex } from '../internal/bytes.js';
import { type RandomSource, systemRandom } from '../internal/clock.js';
import { Counters } from '../internal/diagnostics.js';
import { RETRANSMIT, STUN } from './constants.js';
import { StunResponseError } from './errors.js';
import { decodeBindingResponse, encodeBindingRequest } from './message.js';

/** Per-transaction retransmission settings; every field falls back to the table's default. */
export interface StunTransactionOptions {
  /** Initial retransmission timeout (ms). Default `RETRANSMIT.DEFAULT_RTO_MS` (500). */
  rtoMs?: number;
  /** Rc: total transmissions including the first. Default 7. */
  maxTransmissions?: number;
  /** Rm: wait after the last transmission, in multiples of the initial RTO. Default 16. */
  lastWaitFactor?: number;
  /** Absolute time (same clock as `now`) after which the transaction fails with TIMEOUT. */
  deadline?: number;
}

/** Result of a finished transaction. */
export type StunTransactionResult =
  | {
      readonly ok: true;
      readonly txId: Uint8Array;
      readonly server: AddrPort;
      /** Where the answer came from: always `server` (answers from elsewhere are dropped). */
      readonly from: AddrPort;
      /** Our reflexive address as the server saw it. */
      readonly mapped: AddrPort;
      /** From the first transmission to the answer. */
      readonly rttMs: number;
      /** How many copies had been sent when the answer came (1 = unambiguous RTT sample). */
      readonly transmissions: number;
    }
  | {
      readonly ok: false;
      readonly txId: Uint8Array;
      readonly server: AddrPort;
      /** STUN (error response, or no answer after all transmissions) or TIMEOUT (deadline passed). */
      readonly error: MeshsockError;
    };

/** What `handleTimeout` asks the driver to do. */
export type StunTransactionAction =
  | {
      readonly kind: 'send';
      readonly txId: Uint8Array;
      readonly to: AddrPort;
      readonly bytes: Uint8Array;
      /** Transmission number, 2 for the first retransmission. */
      readonly transmission: number;
    }
  | { readonly kind: 'failed'; readonly result: Extract<StunTransactionResult, { ok: false }> };

/** Counter names of the table. */
export type StunTransactionCounter =
  | 'started'
  | 'retransmits'
  | 'succeeded'
  | 'errorResponses'
  | 'exhausted'
  | 'deadlineExpired'
  | 'cancelled'
  | 'droppedUnknownTx'
  | 'droppedWrongSource'
  | 'droppedMalformed';

interface Tx {
  readonly txId: Uint8Array;
  readonly server: AddrPort;
  /** `server` as "ip:port" with its IP normalised, compared with each answer's source. */
  readonly serverKey: string;
  readonly bytes: Uint8Array;
  readonly rto: number;
  readonly maxTransmissions: number;
  readonly lastWaitFactor: number;
  readonly deadline: number;
  readonly startedAt: number;
  transmissions: number;
  /** When the next retransmission is due, or when the last wait ends. */
  nextAt: number;
}

/** "ip:port" with the IP normalised (IPv4-mapped IPv6 → IPv4, IPv6 canonical); "" for an unparseable address. */
function sourceKey(a: AddrPort): string {
  try {
    return formatAddrPort({ ip: normalizeIp(a.ip), port: a.port });
  } catch {
    return '';
  }
}

function positive(name: string, v: number | undefined, fallback: number, min: number): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v < min) throw new RangeError(`"${name}" must be a finite number >= ${min}, got ${v}`);
  return v;
}

/** The table of outstanding Binding transactions. One per driver; not shared across sockets. */
export class StunTransactions {
  readonly counters = new Counters<StunTransactionCounter>();
  private readonly txs = new Map<string, Tx>();
  private readonly rng: RandomSource;
  private readonly defaults: StunTransactionOptions;

  constructor(opts: { rng?: RandomSource; defaults?: StunTransactionOptions } = {}) {
    this.rng = opts.rng ?? systemRandom;
    this.defaults = opts.defaults ?? {};
  }

  /** Outstanding transactions. */
  get size(): number {
    return this.txs.size;
  }

  /**
   * Opens a transaction to `server`: returns its fresh random ID and the request bytes, which the caller sends
   * now (that is transmission #1). Throws RangeError for bad options.
   */
  start(server: AddrPort, now: number, opts: StunTransactionOptions = {}): { txId: Uint8Array; bytes: Uint8Array } {
    const rto = positive('rtoMs', opts.rtoMs ?? this.defaults.rtoMs, RETRANSMIT.DEFAULT_RTO_MS, RETRANSMIT.MIN_RTO_MS);
    const maxTx = positive(
      'maxTransmissions',
      opts.maxTransmissions ?? this.defaults.maxTransmissions,
      RETRANSMIT.MAX_TRANSMISSIONS,
      1,
    );
    if (!Number.isInteger(maxTx)) throw new RangeError(`"maxTransmissions" must be an integer, got ${maxTx}`);
    const rm = positive(
      'lastWaitFactor',
      opts.lastWaitFactor ?? this.defaults.lastWaitFactor,
      RETRANSMIT.LAST_WAIT_FACTOR,
      0,
    );
    const deadline = opts.deadline ?? this.defaults.deadline ?? Infinity;
    if (Number.isNaN(deadline)) throw new RangeError('"deadline" must be a number');
    let txId: Uint8Array;
    let key: string;
    do {
      txId = Uint8Array.from(this.rng(STUN.TXID_LEN));
      key = toHex(txId);
    } while (this.txs.has(key));
    const bytes = encodeBindingRequest(txId);
    this.txs.set(key, {
      txId,
      server,
      serverKey: sourceKey(server),
      bytes,
      rto,
      maxTransmissions: maxTx,
      lastWaitFactor: rm,
      deadline,
      startedAt: now,
      transmissions: 1,
      nextAt: now + (maxTx > 1 ? rto : rm * rto),
    });
    this.counters.inc('started');
    return { txId, bytes };
  }

  /**
   * Feeds a received STUN datagram. Returns the finished transaction's result, or undefined when the datagram is
   * malformed, not a Binding response, or for no outstanding transaction (each dropped and counted).
   */
  handleResponse(bytes: Uint8Array, from: AddrPort, now: number): StunTransactionResult | undefined {
    let res;
    try {
      res = decodeBindingResponse(bytes);
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.counters.inc('droppedMalformed');
      return undefined;
    }
    const key = toHex(res.txId);
    const tx = this.txs.get(key);
    if (!tx) {
      this.counters.inc('droppedUnknownTx');
      return undefined;
    }
    if (sourceKey(from) !== tx.serverKey) {
      this.counters.inc('droppedWrongSource');
      return undefined;
    }
    this.txs.delete(key);
    if (res.kind === 'error') {
      this.counters.inc('errorResponses');
      return { ok: false, txId: tx.txId, server: tx.server, error: new StunResponseError(res.error, tx.server) };
    }
    this.counters.inc('succeeded');
    return {
      ok: true,
      txId: tx.txId,
      server: tx.server,
      from,
      mapped: res.mapped,
      rttMs: now - tx.startedAt,
      transmissions: tx.transmissions,
    };
  }

  /** Retransmissions that are due and transactions that have failed by `now`, in that order per transaction. */
  handleTimeout(now: number): StunTransactionAction[] {
    const actions: StunTransactionAction[] = [];
    for (const [key, tx] of this.txs) {
      if (now >= tx.deadline) {
        this.txs.delete(key);
        this.counters.inc('deadlineExpired');
        const error = new MeshsockError(
          ErrorCode.TIMEOUT,
          `no STUN answer from ${formatAddrPort(tx.server)} before the deadline (${tx.transmissions} sent)`,
        );
        actions.push({ kind: 'failed', result: { ok: false, txId: tx.txId, server: tx.server, error } });
        continue;
      }
      if (now < tx.nextAt) continue;
      if (tx.transmissions >= tx.maxTransmissions) {
        this.txs.delete(key);
        this.counters.inc('exhausted');
        const error = new MeshsockError(
          ErrorCode.STUN,
          `no STUN answer from ${formatAddrPort(tx.server)} after ${tx.transmissions} transmissions`,
        );
        actions.push({ kind: 'failed', result: { ok: false, txId: tx.txId, server: tx.server, error } });
        continue;
      }
      // Transmission k (k ≥ 2) is due 2^(k-2)·rto after transmission k-1; schedule from the due time, not from
      // `now`, so a late timer does not stretch the whole schedule.
      const sentAt = tx.nextAt;
      tx.transmissions++;
      const wait =
        tx.transmissions < tx.maxTransmissions ? tx.rto * 2 ** (tx.transmissions - 1) : tx.rto * tx.lastWaitFactor;
      tx.nextAt = sentAt + wait;
      this.counters.inc('retransmits');
      actions.push({ kind: 'send', txId: tx.txId, to: tx.server, bytes: tx.bytes, transmission: tx.transmissions });
    }
    return actions;
  }

  /** When `handleTimeout` next has work, or undefined when nothing is outstanding. */
  pollTimeout(): number | undefined {
    let next = Infinity;
    for (const tx of this.txs.values()) next = Math.min(next, tx.nextAt, tx.deadline);
    return Number.isFinite(next) ? next : undefined;
  }

  /** Forgets a transaction (its caller gave up). Returns whether it was outstanding. */
  cancel(txId: Uint8Array): boolean {
    const had = this.txs.delete(toHex(txId));
    if (had) this.counters.inc('cancelled');
    return had;
  }

  /** Forgets every transaction; returns their IDs. */
  clear(): Uint8Array[] {
    const ids = [...this.txs.values()].map((t) => t.txId);
    this.txs.clear();
    return ids;
  }
}
