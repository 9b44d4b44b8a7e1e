import { describe, expect, it } from 'vitest';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import { toHex } from '../../src/internal/bytes.js';
import type { RandomSource } from '../../src/internal/clock.js';
import { RETRANSMIT } from '../../src/stun/constants.js';
import { StunResponseError } from '../../src/stun/errors.js';
import { decodeBindingRequest, encodeBindingError, encodeBindingSuccess } from '../../src/stun/message.js';
import { type StunTransactionAction, StunTransactions } from '../../src/stun/transaction.js';

const SERVER = { ip: '127.0.0.1', port: 3478 };
const T0 = 1_000_000;

/** Deterministic TxIDs: 12 bytes of an incrementing counter. */
function counterRng(): RandomSource {
  let n = 0;
  return (len) => new Uint8Array(len).fill(++n & 0xff);
}

/**
 * Drives the table the way a driver does: jump to pollTimeout(), call handleTimeout(), record what came out,
 * until nothing is outstanding. Returns [offset from T0, action] pairs.
 */
function runSchedule(t: StunTransactions): [number, StunTransactionAction][] {
  const out: [number, StunTransactionAction][] = [];
  for (let guard = 0; guard < 100; guard++) {
    const at = t.pollTimeout();
    if (at === undefined) return out;
    // Nothing is due a millisecond early.
    expect(t.handleTimeout(at - 1)).toEqual([]);
    for (const a of t.handleTimeout(at)) out.push([at - T0, a]);
  }
  throw new Error('schedule did not end');
}

describe('StunTransactions: RFC 8489 §6.2.1 retransmission', () => {
  it('RTO 500 ms (the default), Rc 7, Rm 16: sends at 0, 500, 1500, 3500, 7500, 15500, 31500; fails at 39500', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const { txId, bytes } = t.start(SERVER, T0);
    expect(decodeBindingRequest(bytes).txId).toEqual(txId);
    expect(t.pollTimeout()).toBe(T0 + RETRANSMIT.DEFAULT_RTO_MS);
    const sched = runSchedule(t);
    const sends = sched.filter(([, a]) => a.kind === 'send');
    expect(sends.map(([at]) => at)).toEqual([500, 1500, 3500, 7500, 15500, 31500]);
    for (const [i, [, a]] of sends.entries()) {
      if (a.kind !== 'send') throw new Error('unreachable');
      expect(a.transmission).toBe(i + 2);
      expect(a.to).toBe(SERVER);
      expect(toHex(a.bytes)).toBe(toHex(bytes)); // a retransmission is the same datagram
    }
    const last = sched.at(-1)!;
    expect(last[0]).toBe(39500);
    expect(last[1].kind).toBe('failed');
    if (last[1].kind !== 'failed') return;
    expect(isMeshsockError(last[1].result.error, ErrorCode.STUN)).toBe(true);
    expect(last[1].result.error.message).toContain('after 7 transmissions');
    expect(t.size).toBe(0);
    expect(t.counters.get('retransmits')).toBe(6);
    expect(t.counters.get('exhausted')).toBe(1);
  });

  it('RTO 100 ms (netcheck-style): sends at 0, 100, 300, 700, 1500, 3100, 6300; fails at 7900', () => {
    const t = new StunTransactions({ rng: counterRng() });
    t.start(SERVER, T0, { rtoMs: RETRANSMIT.FAST_RTO_MS });
    const sched = runSchedule(t);
    expect(sched.map(([at, a]) => `${a.kind}@${at}`)).toEqual([
      'send@100',
      'send@300',
      'send@700',
      'send@1500',
      'send@3100',
      'send@6300',
      'failed@7900',
    ]);
  });

  it('honours Rc and Rm from options and from table defaults', () => {
    const t = new StunTransactions({ rng: counterRng(), defaults: { rtoMs: 10, lastWaitFactor: 2 } });
    t.start(SERVER, T0, { maxTransmissions: 3 });
    expect(runSchedule(t).map(([at, a]) => `${a.kind}@${at}`)).toEqual(['send@10', 'send@30', 'failed@50']);
    t.start(SERVER, T0, { maxTransmissions: 1, rtoMs: 100 });
    expect(runSchedule(t).map(([at, a]) => `${a.kind}@${at}`)).toEqual(['failed@200']);
  });

  it('a late timer does not stretch the schedule: overdue sends come out on the following calls', () => {
    const t = new StunTransactions({ rng: counterRng() });
    t.start(SERVER, T0, { rtoMs: 100 });
    const a = t.handleTimeout(T0 + 650); // #2 was due at 100, #3 at 300, #4 at 700
    expect(a.map((x) => x.kind === 'send' && x.transmission)).toEqual([2]);
    expect(t.pollTimeout()).toBe(T0 + 300);
    expect(t.handleTimeout(T0 + 650).map((x) => x.kind === 'send' && x.transmission)).toEqual([3]);
    expect(t.pollTimeout()).toBe(T0 + 700);
  });

  it('an absolute deadline ends the transaction with TIMEOUT before the schedule would', () => {
    const t = new StunTransactions({ rng: counterRng() });
    t.start(SERVER, T0, { rtoMs: 500, deadline: T0 + 3000 });
    const sched = runSchedule(t);
    expect(sched.map(([at, a]) => `${a.kind}@${at}`)).toEqual(['send@500', 'send@1500', 'failed@3000']);
    const last = sched.at(-1)![1];
    if (last.kind !== 'failed') throw new Error('expected failure');
    expect(isMeshsockError(last.result.error, ErrorCode.TIMEOUT)).toBe(true);
    expect(t.counters.get('deadlineExpired')).toBe(1);
  });

  it('keeps independent schedules for concurrent transactions; pollTimeout is the earliest', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const a = t.start(SERVER, T0, { rtoMs: 100 });
    const b = t.start({ ip: '::1', port: 3478 }, T0 + 50, { rtoMs: 40 });
    expect(toHex(a.txId)).not.toBe(toHex(b.txId));
    expect(t.pollTimeout()).toBe(T0 + 90);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const at = t.pollTimeout()!;
      for (const x of t.handleTimeout(at)) if (x.kind === 'send') seen.push(`${x.to.ip}#${x.transmission}@${at - T0}`);
    }
    expect(seen).toEqual(['::1#2@90', '127.0.0.1#2@100', '::1#3@170', '127.0.0.1#3@300']);
  });

  it('rejects bad options with RangeError', () => {
    const t = new StunTransactions();
    expect(() => t.start(SERVER, T0, { rtoMs: 0 })).toThrow(RangeError);
    expect(() => t.start(SERVER, T0, { rtoMs: Number.NaN })).toThrow(RangeError);
    expect(() => t.start(SERVER, T0, { maxTransmissions: 0 })).toThrow(RangeError);
    expect(() => t.start(SERVER, T0, { maxTransmissions: 2.5 })).toThrow(RangeError);
    expect(() => t.start(SERVER, T0, { lastWaitFactor: -1 })).toThrow(RangeError);
    expect(t.size).toBe(0);
  });
});

describe('StunTransactions: responses', () => {
  it('matches a success by TxID: mapped, from, RTT from the first transmission, transmission count', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const { txId } = t.start(SERVER, T0, { rtoMs: 100 });
    t.handleTimeout(T0 + 100); // one retransmission
    const resp = encodeBindingSuccess(txId, { ip: '203.0.113.5', port: 40000 });
    const from = { ip: '127.0.0.1', port: 3478 };
    const r = t.handleResponse(resp, from, T0 + 130);
    expect(r).toEqual({
      ok: true,
      txId,
      server: SERVER,
      from,
      mapped: { ip: '203.0.113.5', port: 40000 },
      rttMs: 130,
      transmissions: 2,
    });
    expect(t.size).toBe(0);
    expect(t.pollTimeout()).toBeUndefined();
    // The answer to the retransmitted copy arrives too: unknown now, dropped and counted.
    expect(t.handleResponse(resp, from, T0 + 140)).toBeUndefined();
    expect(t.counters.get('droppedUnknownTx')).toBe(1);
    expect(t.counters.get('succeeded')).toBe(1);
  });

  it('drops unknown TxIDs, malformed datagrams and non-responses, counting each', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const { txId, bytes } = t.start(SERVER, T0);
    const stranger = encodeBindingSuccess(new Uint8Array(12).fill(0xee), { ip: '192.0.2.1', port: 1 });
    expect(t.handleResponse(stranger, SERVER, T0 + 1)).toBeUndefined();
    expect(t.handleResponse(new Uint8Array([1, 2, 3]), SERVER, T0 + 1)).toBeUndefined();
    expect(t.handleResponse(bytes, SERVER, T0 + 1)).toBeUndefined(); // our own request reflected back
    const corrupt = encodeBindingSuccess(txId, { ip: '192.0.2.1', port: 1 });
    corrupt[30]! ^= 0xff; // breaks FINGERPRINT
    expect(t.handleResponse(corrupt, SERVER, T0 + 1)).toBeUndefined();
    expect(t.counters.get('droppedUnknownTx')).toBe(1);
    expect(t.counters.get('droppedMalformed')).toBe(3);
    expect(t.size).toBe(1); // still waiting
  });

  it('turns an error response into a StunResponseError (code MESHSOCK_ERR_STUN) with class/number/reason', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const { txId } = t.start(SERVER, T0);
    const r = t.handleResponse(
      encodeBindingError(txId, 420, 'Unknown Attribute', { unknownAttributes: [3] }),
      SERVER,
      T0 + 5,
    );
    expect(r?.ok).toBe(false);
    if (!r || r.ok) return;
    expect(r.error).toBeInstanceOf(StunResponseError);
    const e = r.error as StunResponseError;
    expect(e.code).toBe(ErrorCode.STUN);
    expect([e.stunCode, e.errorClass, e.errorNumber, e.reason]).toEqual([420, 4, 20, 'Unknown Attribute']);
    expect(e.unknownAttributes).toEqual([3]);
    expect(e.server).toEqual(SERVER);
    expect(t.size).toBe(0);
    expect(t.counters.get('errorResponses')).toBe(1);
  });

  it('cancel() and clear() forget transactions', () => {
    const t = new StunTransactions({ rng: counterRng() });
    const a = t.start(SERVER, T0);
    t.start(SERVER, T0);
    expect(t.cancel(a.txId)).toBe(true);
    expect(t.cancel(a.txId)).toBe(false);
    expect(t.size).toBe(1);
    expect(t.handleResponse(encodeBindingSuccess(a.txId, SERVER), SERVER, T0 + 1)).toBeUndefined();
    expect(t.clear()).toHaveLength(1);
    expect(t.pollTimeout()).toBeUndefined();
    expect(t.handleTimeout(T0 + 1e9)).toEqual([]);
  });

  it('never reuses an outstanding TxID even if the RNG repeats', () => {
    let calls = 0;
    const t = new StunTransactions({ rng: (n) => new Uint8Array(n).fill(calls++ < 3 ? 1 : 2) });
    const a = t.start(SERVER, T0);
    const b = t.start(SERVER, T0);
    expect(toHex(a.txId)).not.toBe(toHex(b.txId));
  });
});
