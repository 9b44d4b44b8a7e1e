import * as diagnosticsChannel from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import type { AddrPort } from '../../src/internal/addr.js';
import { FakeClock } from '../../src/internal/clock.js';
import { StunClient } from '../../src/stun/client.js';
import { StunResponseError } from '../../src/stun/errors.js';
import { decodeBindingRequest, encodeBindingError, encodeBindingSuccess } from '../../src/stun/message.js';
import { respondToStun } from '../../src/stun/server.js';

const SERVER: AddrPort = { ip: '192.0.2.10', port: 3478 };
const ME: AddrPort = { ip: '198.51.100.7', port: 41641 };

interface Sent {
  at: number;
  bytes: Uint8Array;
  to: AddrPort;
}

function setup(opts: { rtoMs?: number; send?: (b: Uint8Array, to: AddrPort) => void } = {}) {
  const clock = new FakeClock();
  const sent: Sent[] = [];
  const client = new StunClient({
    clock,
    send:
      opts.send ??
      ((bytes, to) => {
        sent.push({ at: clock.now(), bytes, to });
      }),
    ...(opts.rtoMs === undefined ? {} : { rtoMs: opts.rtoMs }),
  });
  const t0 = clock.now();
  return { clock, sent, client, t0 };
}

/** Settles a promise into a plain value so tests can assert on rejections without unhandled-rejection noise. */
async function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error };
  }
}

describe('StunClient (fake clock, fake socket)', () => {
  let unsubscribe: (() => void) | undefined;
  afterEach(() => unsubscribe?.());

  it('sends the 40-byte request and resolves with the mapped address and RTT', async () => {
    const { clock, sent, client } = setup();
    const events: unknown[] = [];
    const onStun = (m: unknown): void => {
      events.push(m);
    };
    diagnosticsChannel.subscribe('meshsock:stun', onStun);
    unsubscribe = () => diagnosticsChannel.unsubscribe('meshsock:stun', onStun);

    const q = client.query(SERVER);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.bytes).toHaveLength(40);
    expect(sent[0]!.to).toEqual(SERVER);
    expect(client.pendingQueries).toBe(1);
    clock.advance(42);
    const { txId } = decodeBindingRequest(sent[0]!.bytes);
    expect(client.handlePacket(encodeBindingSuccess(txId, ME), SERVER)).toBe(true);
    await expect(q).resolves.toEqual({ mapped: ME, rttMs: 42, server: SERVER, from: SERVER, transmissions: 1 });
    expect(client.pendingQueries).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    expect(events).toEqual([{ server: '192.0.2.10:3478', mapped: '198.51.100.7:41641', rttMs: 42 }]);
  });

  it('answers through the pure server responder end to end (as seen from our address)', async () => {
    const { sent, client } = setup();
    const q = client.query(SERVER);
    const resp = respondToStun(sent[0]!.bytes, ME)!;
    expect(client.handlePacket(Buffer.from(resp), SERVER)).toBe(true); // a Node Buffer, as dgram delivers
    await expect(q).resolves.toMatchObject({ mapped: ME });
  });

  it('retransmits on the RFC schedule, then rejects with STUN after the last wait', async () => {
    const { clock, sent, client, t0 } = setup({ rtoMs: 100 });
    const q = outcome(client.query(SERVER));
    clock.advance(7899);
    expect(sent.map((s) => s.at - t0)).toEqual([0, 100, 300, 700, 1500, 3100, 6300]);
    expect(new Set(sent.map((s) => Buffer.from(s.bytes).toString('hex'))).size).toBe(1);
    expect(client.pendingQueries).toBe(1);
    clock.advance(1);
    const r = await q;
    expect(r.ok).toBe(false);
    if (!r.ok) expect(isMeshsockError(r.error, ErrorCode.STUN)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
  });

  it('a response to a retransmitted copy reports the RTT from the first send and the copy count', async () => {
    const { clock, sent, client } = setup({ rtoMs: 100 });
    const q = client.query(SERVER);
    clock.advance(350); // copies at 0, 100, 300
    const { txId } = decodeBindingRequest(sent[2]!.bytes);
    client.handlePacket(encodeBindingSuccess(txId, ME), SERVER);
    await expect(q).resolves.toMatchObject({ rttMs: 350, transmissions: 3 });
  });

  it('rejects with TIMEOUT exactly at timeoutMs', async () => {
    const { clock, sent, client } = setup({ rtoMs: 500 });
    const q = outcome(client.query(SERVER, { timeoutMs: 2000 }));
    clock.advance(1999);
    expect(client.pendingQueries).toBe(1);
    clock.advance(1);
    const r = await q;
    expect(!r.ok && isMeshsockError(r.error, ErrorCode.TIMEOUT)).toBe(true);
    expect(sent).toHaveLength(3); // 0, 500, 1500
    expect(clock.pendingTimers).toBe(0);
  });

  it('per-query rtoMs overrides the client default', async () => {
    const { clock, sent, client, t0 } = setup();
    const q = outcome(client.query(SERVER, { rtoMs: 10, timeoutMs: 100 }));
    clock.advance(100);
    expect(sent.map((s) => s.at - t0)).toEqual([0, 10, 30, 70]);
    expect((await q).ok).toBe(false);
  });

  it('aborting rejects with ABORTED, stops retransmitting and forgets the transaction', async () => {
    const { clock, sent, client } = setup({ rtoMs: 100 });
    const ac = new AbortController();
    const q = outcome(client.query(SERVER, { signal: ac.signal }));
    clock.advance(150);
    ac.abort(new Error('user gave up'));
    const r = await q;
    expect(!r.ok && isMeshsockError(r.error, ErrorCode.ABORTED)).toBe(true);
    const n = sent.length;
    clock.advance(10_000);
    expect(sent).toHaveLength(n);
    expect(clock.pendingTimers).toBe(0);
    const { txId } = decodeBindingRequest(sent[0]!.bytes);
    expect(client.handlePacket(encodeBindingSuccess(txId, ME), SERVER)).toBe(false);
  });

  it('an already-aborted signal rejects at once without sending', async () => {
    const { sent, client } = setup();
    const r = await outcome(client.query(SERVER, { signal: AbortSignal.abort() }));
    expect(!r.ok && isMeshsockError(r.error, ErrorCode.ABORTED)).toBe(true);
    expect(sent).toHaveLength(0);
  });

  it('an error response rejects with StunResponseError', async () => {
    const { sent, client } = setup();
    const q = outcome(client.query(SERVER));
    const { txId } = decodeBindingRequest(sent[0]!.bytes);
    client.handlePacket(encodeBindingError(txId, 500, 'Server Error'), SERVER);
    const r = await q;
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBeInstanceOf(StunResponseError);
    expect((r.error as StunResponseError).stunCode).toBe(500);
  });

  it('close() rejects pending queries with CLOSED, and later queries too', async () => {
    const { clock, client } = setup();
    const a = outcome(client.query(SERVER));
    const b = outcome(client.query({ ip: '::1', port: 3478 }));
    client.close();
    client.close();
    for (const r of [await a, await b]) expect(!r.ok && isMeshsockError(r.error, ErrorCode.CLOSED)).toBe(true);
    expect(clock.pendingTimers).toBe(0);
    const c = await outcome(client.query(SERVER));
    expect(!c.ok && isMeshsockError(c.error, ErrorCode.CLOSED)).toBe(true);
  });

  it('handlePacket drops what is not an answer to a pending query', async () => {
    const { sent, client } = setup();
    const q = client.query(SERVER);
    expect(client.handlePacket(new Uint8Array([1, 0, 0, 0, 9, 9]), SERVER)).toBe(false);
    expect(client.handlePacket(encodeBindingSuccess(new Uint8Array(12), ME), SERVER)).toBe(false);
    expect(client.handlePacket(sent[0]!.bytes, SERVER)).toBe(false); // a Binding request, not a response
    expect(client.transactions.counters.get('droppedUnknownTx')).toBe(1);
    expect(client.transactions.counters.get('droppedMalformed')).toBe(1);
    const { txId } = decodeBindingRequest(sent[0]!.bytes);
    // The right transaction ID from another address (or another port of the server's) is not an answer.
    expect(client.handlePacket(encodeBindingSuccess(txId, ME), { ip: '192.0.2.99', port: 1 })).toBe(false);
    expect(client.handlePacket(encodeBindingSuccess(txId, ME), { ...SERVER, port: SERVER.port + 1 })).toBe(false);
    expect(client.transactions.counters.get('droppedWrongSource')).toBe(2);
    expect(client.handlePacket(encodeBindingSuccess(txId, ME), SERVER)).toBe(true);
    await expect(q).resolves.toMatchObject({ mapped: ME, from: SERVER });
  });

  it('concurrent queries to two servers resolve independently', async () => {
    const { sent, client } = setup();
    const other: AddrPort = { ip: '2001:db8::5', port: 3478 };
    const qa = client.query(SERVER);
    const qb = client.query(other);
    const mappedB: AddrPort = { ip: '2001:db8::77', port: 5555 };
    client.handlePacket(encodeBindingSuccess(decodeBindingRequest(sent[1]!.bytes).txId, mappedB), other);
    client.handlePacket(encodeBindingSuccess(decodeBindingRequest(sent[0]!.bytes).txId, ME), SERVER);
    await expect(qb).resolves.toMatchObject({ mapped: mappedB, server: other });
    await expect(qa).resolves.toMatchObject({ mapped: ME, server: SERVER });
  });

  it('a throwing or rejecting send is counted and the schedule carries on', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const client = new StunClient({
      clock,
      rtoMs: 100,
      send: () => {
        calls++;
        if (calls === 1) throw new Error('EHOSTUNREACH');
        return Promise.reject(new Error('ENOBUFS'));
      },
    });
    const q = outcome(client.query(SERVER, { timeoutMs: 350 }));
    clock.advance(350);
    await q;
    await Promise.resolve();
    expect(calls).toBe(3);
    expect(client.sendErrors).toBe(3);
  });

  it('requires a send function', () => {
    expect(() => new StunClient({} as never)).toThrow(TypeError);
  });
});
