import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { DerpConn, DerpConnectOptions } from '../../src/derp/conn.js';
import { parseDerpMap } from '../../src/derp/derp-map.js';
import type { Frame } from '../../src/derp/frame.js';
import { DERP_CLIENT, RegionClient, type RegionState } from '../../src/derp/region-client.js';
import { ErrorCode, MeshsockError, isMeshsockError } from '../../src/errors.js';
import { FakeClock } from '../../src/internal/clock.js';
import { PrivateKey } from '../../src/key/keys.js';

/** Stands in for DerpConn: records what the region client sends, lets the test inject frames and closes. */
class FakeConn extends EventEmitter<{ frame: [Frame]; close: [Error | undefined] }> {
  readonly sent: { dst: string; packet: number[] }[] = [];
  readonly preferred: boolean[] = [];
  readonly pings: Uint8Array[] = [];
  readonly serverKey = PrivateKey.generate().publicKey;
  readonly localAddress = { ip: '127.0.0.1', port: 40000 };
  closed = false;
  acceptSends = true;
  constructor(readonly url: string) {
    super();
  }
  sendPacket(dst: { hex: string }, packet: Uint8Array): boolean {
    if (!this.acceptSends) return false;
    this.sent.push({ dst: dst.hex, packet: [...packet] });
    return true;
  }
  notePreferred(p: boolean): void {
    this.preferred.push(p);
  }
  ping(data: Uint8Array): void {
    this.pings.push(data.slice());
  }
  close(): void {
    this.drop(undefined);
  }
  drop(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    process.nextTick(() => this.emit('close', err));
  }
}

const REGION = parseDerpMap({
  Regions: {
    '7': {
      RegionCode: 'lab',
      Nodes: [
        { Name: '7s', HostName: '127.0.0.1', STUNOnly: true },
        { Name: '7a', HostName: '127.0.0.1', DERPPort: 1001, InsecureForTests: true },
        { Name: '7b', HostName: '127.0.0.1', DERPPort: 1002, InsecureForTests: true },
      ],
    },
  },
}).regions.get(7)!;

/** A connect function driven by the test: each call is parked until the test settles it. */
function scriptedConnect() {
  const calls: { opts: DerpConnectOptions; resolve: (c: FakeConn) => void; reject: (e: Error) => void }[] = [];
  const waiters: (() => void)[] = [];
  const connect = (opts: DerpConnectOptions): Promise<DerpConn> =>
    new Promise((resolve, reject) => {
      calls.push({ opts, resolve: (c) => resolve(c as unknown as DerpConn), reject });
      waiters.splice(0).forEach((w) => w());
    });
  const nextCall = async (n: number) => {
    while (calls.length < n) await new Promise<void>((r) => waiters.push(r));
    return calls[n - 1]!;
  };
  return { connect, calls, nextCall };
}

function waitState(rc: RegionClient, s: RegionState): Promise<void> {
  if (rc.state === s) return Promise.resolve();
  return new Promise((resolve) => {
    const on = (st: { state: RegionState }) => {
      if (st.state === s) {
        rc.off('state', on);
        resolve();
      }
    };
    rc.on('state', on);
  });
}

const fastBackoff = { minMs: 1, maxMs: 2, randomize: false };
const key = () => PrivateKey.generate();

describe('RegionClient', () => {
  it('dials DERP nodes in order (STUN-only skipped): 1.5 s for all but the last, the rest of 10 s for the last', async () => {
    const clock = new FakeClock();
    const s = scriptedConnect();
    const rc = new RegionClient({ region: REGION, privateKey: key(), clock, connect: s.connect, backoff: fastBackoff });
    rc.start();
    const first = await s.nextCall(1);
    expect(first.opts.url).toBe('http://127.0.0.1:1001/derp');
    expect(first.opts.timeoutMs).toBe(1500);
    expect(first.opts.canAckPings).toBe(true);
    clock.advance(1500);
    first.reject(new MeshsockError(ErrorCode.TIMEOUT, 'node a timed out'));
    const second = await s.nextCall(2);
    expect(second.opts.url).toBe('http://127.0.0.1:1002/derp');
    expect(second.opts.timeoutMs).toBe(8500);
    second.resolve(new FakeConn(second.opts.url));
    await waitState(rc, 'connected');
    expect(rc.status()).toMatchObject({
      connected: true,
      node: '7b',
      regionCode: 'lab',
      url: 'http://127.0.0.1:1002/derp',
    });
    rc.close();
  });

  it('queues up to 32 packets while connecting and sends them on connect', async () => {
    const s = scriptedConnect();
    const rc = new RegionClient({ region: REGION, privateKey: key(), connect: s.connect, backoff: fastBackoff });
    const dst = key().publicKey;
    rc.start();
    const call = await s.nextCall(1);
    for (let i = 0; i < DERP_CLIENT.CONNECTING_QUEUE_DEPTH; i++) expect(rc.send(dst, new Uint8Array([i]))).toBe(true);
    expect(rc.send(dst, new Uint8Array([99]))).toBe(false);
    expect(rc.counters.get('dropQueueFull')).toBe(1);
    const conn = new FakeConn(call.opts.url);
    call.resolve(conn);
    await waitState(rc, 'connected');
    expect(conn.sent.map((x) => x.packet[0])).toEqual([...Array(32).keys()]);
    expect(conn.sent[0]!.dst).toBe(dst.hex);
    rc.close();
  });

  it('drops the queue when the attempt fails; in backoff sends are dropped and counted, never thrown', async () => {
    const s = scriptedConnect();
    const rc = new RegionClient({
      region: REGION,
      privateKey: key(),
      connect: s.connect,
      backoff: { minMs: 60_000, randomize: false },
    });
    const dst = key().publicKey;
    rc.start();
    (await s.nextCall(1)).reject(new Error('refused a'));
    expect(rc.send(dst, new Uint8Array([1]))).toBe(true); // second node's attempt still in flight
    (await s.nextCall(2)).reject(new Error('refused b'));
    await waitState(rc, 'backoff');
    expect(rc.counters.get('dropConnectFailed')).toBe(1);
    expect(rc.send(dst, new Uint8Array([2]))).toBe(false);
    expect(rc.counters.get('dropDisconnected')).toBe(1);
    expect(rc.status().lastError).toMatch(/refused a/);
    expect(rc.send(dst, new Uint8Array(64 * 1024 + 1))).toBe(false);
    expect(rc.counters.get('dropTooLarge')).toBe(1);
    rc.close();
    expect(rc.state).toBe('closed');
    expect(rc.send(dst, new Uint8Array([3]))).toBe(false);
  });

  it('reconnects after the link drops and re-sends NotePreferred', async () => {
    const clock = new FakeClock();
    const s = scriptedConnect();
    const rc = new RegionClient({
      region: REGION,
      privateKey: key(),
      clock,
      connect: s.connect,
      backoff: fastBackoff,
      preferred: true,
    });
    rc.start();
    const c1 = new FakeConn('u1');
    (await s.nextCall(1)).resolve(c1);
    await waitState(rc, 'connected');
    expect(c1.preferred).toEqual([true]);
    rc.notePreferred(false);
    rc.notePreferred(true);
    // The link dies 20 s later (not a flap): redial at once.
    clock.advance(20_000);
    c1.drop(new MeshsockError(ErrorCode.CLOSED, 'server went away'));
    await waitState(rc, 'connecting');
    const c2 = new FakeConn('u2');
    (await s.nextCall(2)).resolve(c2);
    await waitState(rc, 'connected');
    expect(c2.preferred).toEqual([true]);
    expect(rc.counters.get('connects')).toBe(2);
    expect(rc.counters.get('disconnects')).toBe(1);
    expect(rc.status().lastError).toMatch(/server went away/);
    rc.close();
  });

  it('waits the min backoff on the injected clock before redialling a link that flapped', async () => {
    const clock = new FakeClock();
    const s = scriptedConnect();
    const rc = new RegionClient({
      region: REGION,
      privateKey: key(),
      clock,
      connect: s.connect,
      backoff: { minMs: 700, randomize: false },
    });
    rc.start();
    const c1 = new FakeConn('u1');
    (await s.nextCall(1)).resolve(c1);
    await waitState(rc, 'connected');
    c1.drop(new Error('reset'));
    await waitState(rc, 'backoff');
    await new Promise((r) => setImmediate(r));
    expect(s.calls).toHaveLength(1);
    clock.advance(699);
    await new Promise((r) => setImmediate(r));
    expect(s.calls).toHaveLength(1);
    clock.advance(1);
    await s.nextCall(2);
    rc.close();
  });

  it('emits received packets as copies with the source key, and PeerGone', async () => {
    const s = scriptedConnect();
    const rc = new RegionClient({ region: REGION, privateKey: key(), connect: s.connect });
    rc.start();
    const conn = new FakeConn('u');
    (await s.nextCall(1)).resolve(conn);
    await waitState(rc, 'connected');
    const src = key().publicKey;
    const got: [string, number[]][] = [];
    const gone: [string, number][] = [];
    rc.on('packet', (k, p) => got.push([k.hex, [...p]]));
    rc.on('peerGone', (k, r) => gone.push([k.hex, r]));
    const buf = new Uint8Array([1, 2, 3]);
    conn.emit('frame', { type: 'recvPacket', src: src.bytes, packet: buf });
    buf.fill(0); // the frame buffer is reused after the listener returns
    conn.emit('frame', { type: 'peerGone', key: src.bytes, reason: 1 });
    expect(got).toEqual([[src.hex, [1, 2, 3]]]);
    expect(gone).toEqual([[src.hex, 1]]);
    rc.close();
  });

  it('ping resolves with the Pong RTT on the injected clock, times out, and fails on close', async () => {
    const clock = new FakeClock();
    const s = scriptedConnect();
    const rc = new RegionClient({ region: REGION, privateKey: key(), clock, connect: s.connect });
    // Ping before connecting: waits for the link.
    const p = rc.ping({ timeoutMs: 1000 });
    const conn = new FakeConn('u');
    (await s.nextCall(1)).resolve(conn);
    await waitState(rc, 'connected');
    expect(conn.pings).toHaveLength(1);
    clock.advance(42);
    conn.emit('frame', { type: 'pong', data: new Uint8Array(8) }); // wrong data: ignored
    conn.emit('frame', { type: 'pong', data: conn.pings[0]! });
    expect(await p).toBe(42);
    expect(rc.status().latencyMs).toBe(42);

    const t = rc.ping({ timeoutMs: 1000 });
    clock.advance(1000);
    await expect(t).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.TIMEOUT));

    const c = rc.ping({ timeoutMs: 1000 });
    rc.close();
    await expect(c).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.CLOSED));
    await expect(rc.ping()).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.CLOSED));
  });

  it('counts a send the connection refused (rate limit) and returns false', async () => {
    const s = scriptedConnect();
    const rc = new RegionClient({ region: REGION, privateKey: key(), connect: s.connect });
    rc.start();
    const conn = new FakeConn('u');
    conn.acceptSends = false;
    (await s.nextCall(1)).resolve(conn);
    await waitState(rc, 'connected');
    expect(rc.send(key().publicKey, new Uint8Array([1]))).toBe(false);
    expect(rc.counters.get('dropConn')).toBe(1);
    rc.close();
  });

  it('closes on its AbortSignal and rejects a region without DERP nodes', () => {
    const ac = new AbortController();
    const rc = new RegionClient({ region: REGION, privateKey: key(), signal: ac.signal });
    ac.abort();
    expect(rc.state).toBe('closed');
    const stunOnly = parseDerpMap({
      Regions: { '1': { Nodes: [{ HostName: 'x.example', STUNOnly: true }] } },
    }).regions.get(1)!;
    expect(() => new RegionClient({ region: stunOnly, privateKey: key() })).toThrow(/no DERP/);
  });
});
