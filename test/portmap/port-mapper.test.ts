/**
 * PortMapper (the driver) on loopback against the fake gateway behind real sockets (a random 127.x.y.z address):
 * each protocol end to end, release on close, events, status, diagnostics, failures. Nothing leaves loopback: the
 * gateway is always passed explicitly, and multicast is off for a loopback gateway.
 */
import * as diagnosticsChannel from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, MeshsockError } from '../../src/errors.js';
import { FakeClock } from '../../src/internal/clock.js';
import { channels } from '../../src/internal/diagnostics.js';
import { PORTMAP } from '../../src/portmap/constants.js';
import { PortmapError } from '../../src/portmap/errors.js';
import { PortMapper, readDefaultGateway } from '../../src/portmap/port-mapper.js';
import type { PortMapping } from '../../src/portmap/types.js';
import { FakeGatewayNet } from './fake-gateway-net.js';

const cleanup: Array<() => unknown> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function gateway(opts: Parameters<typeof FakeGatewayNet.start>[0] = {}): Promise<FakeGatewayNet> {
  const g = await FakeGatewayNet.start(opts);
  cleanup.push(() => g.close());
  return g;
}

/** Waits for real I/O (loopback datagrams) to land; fails after 5 s. */
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
}

function mapper(g: FakeGatewayNet, opts: Partial<ConstructorParameters<typeof PortMapper>[0]> = {}): PortMapper {
  const pm = new PortMapper({ internalPort: 40000 + Math.floor(Math.random() * 20000), gateway: g.ip, ...opts });
  cleanup.push(() => pm.close());
  return pm;
}

describe('PortMapper on loopback', () => {
  it.each([
    ['pmp', { pcp: false, upnp: false }],
    ['pcp', { pmp: false, upnp: false }],
    ['upnp', { pmp: false, pcp: false }],
  ] as const)('maps with %s, emits `mapping`, and releases on close', async (protocol, gwOpts) => {
    const g = await gateway(gwOpts);
    const pm = mapper(g, { protocols: [protocol] });
    const events: Array<[PortMapping | undefined, string]> = [];
    pm.on('mapping', (m, _prev, reason) => events.push([m, reason]));
    await pm.start();
    const m = await pm.waitForMapping({ timeoutMs: 5000 });
    expect(m.protocol).toBe(protocol);
    expect(m.external.ip).toBe('203.0.113.7');
    expect(pm.mapping()).toEqual(m);
    expect(g.gw.mappings.size).toBe(1);
    const st = pm.status();
    expect(st).toMatchObject({ phase: 'mapped', gateway: g.ip, localAddress: '127.0.0.1', mapping: m });
    expect(st.counters.mappingsCreated).toBe(1);
    await pm.close();
    expect(g.gw.mappings.size).toBe(0);
    expect(events.map(([x, r]) => [x?.protocol, r])).toEqual([
      [protocol, 'created'],
      [undefined, 'closed'],
    ]);
    expect(pm.status().phase).toBe('closed');
    expect(pm.status().counters.released).toBe(1);
  });

  it('prefers NAT-PMP when the gateway offers everything, and publishes on the portmap channel', async () => {
    const g = await gateway();
    const seen: Array<Record<string, unknown>> = [];
    const sub = (msg: unknown): void => void seen.push(msg as Record<string, unknown>);
    diagnosticsChannel.subscribe(channels.portmap.name, sub);
    cleanup.push(() => diagnosticsChannel.unsubscribe(channels.portmap.name, sub));
    const pm = mapper(g);
    await pm.start();
    const m = await pm.waitForMapping({ timeoutMs: 5000 });
    expect(m.protocol).toBe('pmp');
    const names = seen.filter((e) => e.gateway === g.ip).map((e) => e.event);
    expect(names).toEqual(expect.arrayContaining(['probe', 'probed', 'mapped', 'mapping']));
  });

  it('renews on its one timer: a FakeClock moved past half the lifetime sends the renewal', async () => {
    const g = await gateway({ pcp: false, upnp: false });
    const clock = new FakeClock();
    const pm = mapper(g, { clock, protocols: ['pmp'] });
    await pm.start();
    const m = await pm.waitForMapping();
    expect(m.expiresAt).toBe(clock.now() + PORTMAP.LIFETIME_S * 1000);
    const maps = (): number => g.gw.log.filter((l) => l.startsWith('pmp map')).length;
    expect(maps()).toBe(1);
    clock.advance((PORTMAP.LIFETIME_S * 1000) / 2);
    await until(() => pm.status().counters.renewals === 1);
    expect(maps()).toBe(2);
    expect(pm.mapping()!.expiresAt).toBe(clock.now() + PORTMAP.LIFETIME_S * 1000);
  });

  it('rejects waitForMapping with a PortmapError when nothing answers, and keeps retrying in the background', async () => {
    const g = await gateway({ pmp: false, pcp: false, upnp: false });
    const pm = mapper(g);
    await pm.start();
    const err = await pm.waitForMapping({ timeoutMs: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PortmapError);
    expect((err as PortmapError).reason).toBe('no-service');
    expect(pm.status().phase).toBe('waiting');
  });

  it('waitForMapping: TIMEOUT, ABORTED, CLOSED', async () => {
    const g = await gateway({ pmp: false, pcp: false, upnp: false });
    const pm = mapper(g);
    await pm.start();
    const t = await pm.waitForMapping({ timeoutMs: 1 }).catch((e: unknown) => e);
    expect((t as MeshsockError).code).toBe(ErrorCode.TIMEOUT);
    const ac = new AbortController();
    const p = pm.waitForMapping({ signal: ac.signal });
    ac.abort();
    expect(((await p.catch((e: unknown) => e)) as MeshsockError).code).toBe(ErrorCode.ABORTED);
    const q = new PortMapper({ internalPort: 1234, gateway: g.ip });
    const pending = q.waitForMapping();
    await q.close();
    expect(((await pending.catch((e: unknown) => e)) as MeshsockError).code).toBe(ErrorCode.CLOSED);
    await expect(q.start()).rejects.toMatchObject({ code: ErrorCode.CLOSED });
  });

  it('refuses a public or non-IPv4 gateway at construction', () => {
    expect(() => new PortMapper({ internalPort: 1, gateway: '203.0.113.1' })).toThrow(MeshsockError);
    expect(() => new PortMapper({ internalPort: 1, gateway: '203.0.113.1' })).toThrow(/not a private address/);
    expect(() => new PortMapper({ internalPort: 1, gateway: '::1' })).toThrow(/IPv4/);
    expect(() => new PortMapper({ internalPort: 1, localAddress: 'x', gateway: '127.0.0.1' })).toThrow(MeshsockError);
    expect(() => new PortMapper({ internalPort: 70000, gateway: '127.0.0.1' })).toThrow(RangeError);
    expect(() => new PortMapper({ internalPort: 1, gateway: '127.0.0.1', protocols: [] })).toThrow(TypeError);
  });

  it('readDefaultGateway only reads the routing table', () => {
    const gw = readDefaultGateway();
    expect(gw === undefined || /^\d+\.\d+\.\d+\.\d+$/.test(gw)).toBe(true);
  });

  it('close() is idempotent and safe before start()', async () => {
    const g = await gateway();
    const pm = mapper(g);
    await Promise.all([pm.close(), pm.close()]);
    expect(pm.status().phase).toBe('closed');
  });
});
