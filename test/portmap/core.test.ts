/**
 * The port-mapper core on a fake clock against a fake gateway (sim.ts): protocol choice, mapping, renewal, gateway
 * reboot, release, fallbacks, failures. No sockets, no sleeping.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.js';
import { PORTMAP } from '../../src/portmap/constants.js';
import { PortmapCore } from '../../src/portmap/core.js';
import { PortmapError } from '../../src/portmap/errors.js';
import { encodeNatPmpResponse } from '../../src/portmap/nat-pmp.js';
import { Sim } from './sim.js';

const HALF = (PORTMAP.LIFETIME_S * 1000) / 2;

describe('probe and protocol choice', () => {
  it('sends NAT-PMP, PCP ANNOUNCE, unicast then multicast SSDP; maps with NAT-PMP when all answer', () => {
    const s = new Sim().startCore();
    const first = s
      .sent('send')
      .map((a) => (a.kind === 'send' ? `${a.socket} ${a.to.ip}:${a.to.port} ${a.bytes[0]}` : ''));
    expect(first).toEqual([
      'pmp 192.168.1.1:5351 0', // NAT-PMP public address
      'pmp 192.168.1.1:5351 2', // PCP ANNOUNCE
      'ssdp 192.168.1.1:1900 77', // "M-SEARCH", unicast first
      'ssdp 239.255.255.250:1900 77', // ssdp:all
      'ssdp 239.255.255.250:1900 77', // InternetGatewayDevice:1
    ]);
    s.advance(1000);
    expect(s.mappings).toHaveLength(1);
    const m = s.mappings[0]!;
    expect(m.reason).toBe('created');
    expect(m.mapping).toMatchObject({
      protocol: 'pmp',
      external: { ip: '203.0.113.7', port: 41641 },
      internalPort: 41641,
      lifetimeS: 7200,
      permanent: false,
    });
    // The probe ended when NAT-PMP answered (1 ms), not at 250 ms; the map answer came 1 ms later.
    expect(s.sinceStart(m.at)).toBe(2);
    expect(s.gw.log.filter((l) => l.startsWith('pmp map'))).toEqual(['pmp map 41641->41641 7200s']);
    expect(s.core.state).toBe('mapped');
    expect(s.strays).toEqual([]);
  });

  it('uses PCP when NAT-PMP is absent, UPnP when both are', () => {
    const pcp = new Sim({ gw: { pmp: false } }).startCore().advance(1000);
    expect(pcp.mappings[0]!.mapping?.protocol).toBe('pcp');
    // NAT-PMP (preferred) stays silent, so the probe runs its full 250 ms before PCP maps.
    expect(pcp.sinceStart(pcp.mappings[0]!.at)).toBe(PORTMAP.PROBE_TIMEOUT_MS + 1);
    const upnp = new Sim({ gw: { pmp: false, pcp: false } }).startCore().advance(1000);
    expect(upnp.mappings[0]!.mapping?.protocol).toBe('upnp');
    // NAT-PMP and PCP stay silent, so the probe runs its 250 ms; then describe, add, external IP (1 ms each).
    expect(upnp.sinceStart(upnp.mappings[0]!.at)).toBe(PORTMAP.PROBE_TIMEOUT_MS + 3);
    // With UPnP the only protocol enabled, 50 ms after its first answer.
    const only = new Sim({ core: { protocols: ['upnp'] } }).startCore().advance(1000);
    expect(only.sinceStart(only.mappings[0]!.at)).toBe(1 + PORTMAP.UPNP_COLLECT_MS + 3);
  });

  it('honours the `protocols` option and its order', () => {
    const s = new Sim({ core: { protocols: ['upnp', 'pmp'] } }).startCore().advance(1000);
    expect(s.mappings[0]!.mapping?.protocol).toBe('upnp');
    expect(s.gw.log.some((l) => l.startsWith('pcp'))).toBe(false);
    const only = new Sim({ core: { protocols: ['pcp'] } }).startCore().advance(1000);
    expect(only.mappings[0]!.mapping?.protocol).toBe('pcp');
    expect(only.gw.log.some((l) => l.startsWith('pmp') || l.startsWith('ssdp'))).toBe(false);
  });

  it('no multicast towards a loopback gateway', () => {
    const s = new Sim({ gw: { ip: '127.0.0.1' } }).startCore();
    expect(s.sent('send').filter((a) => a.kind === 'send' && a.to.ip === '239.255.255.250')).toEqual([]);
  });

  it('nothing answers: waits 250 ms, reports NO_SERVICE, retries after 30 s then 60 s', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false, upnp: false } }).startCore().advance(300);
    const st = s.core.status(s.now);
    expect(st.phase).toBe('waiting');
    expect(st.lastError).toBeInstanceOf(PortmapError);
    expect(st.lastError?.code).toBe(ErrorCode.PORTMAP);
    expect(st.lastError?.reason).toBe('no-service');
    expect(st.lastError?.message).toMatch(/pmp: no answer, pcp: no answer, upnp: no answer/);
    const probes = (): number => s.events.filter((e) => e.event === 'probe').length;
    s.advance(PORTMAP.RETRY_MIN_MS);
    expect(probes()).toBe(2);
    s.advance(PORTMAP.RETRY_MIN_MS);
    expect(probes()).toBe(2); // backoff doubled to 60 s
    s.advance(PORTMAP.RETRY_MIN_MS + 300);
    expect(probes()).toBe(3);
  });

  it('PCP NOT_AUTHORIZED / ADDRESS_MISMATCH on ANNOUNCE rule PCP out', () => {
    for (const code of [2, 12]) {
      const s = new Sim({ gw: { pmp: false } });
      s.gw.pcpAnnounceResult = code;
      s.startCore().advance(1000);
      expect(s.mappings[0]!.mapping?.protocol).toBe('upnp');
      expect(s.core.status(s.now).services.pcp).toMatchObject({
        available: false,
        reason: code === 2 ? 'NOT_AUTHORIZED' : 'ADDRESS_MISMATCH',
      });
    }
  });

  it('cross-version answers: a NAT-PMP-only box rules out PCP, a PCP-only box rules out NAT-PMP', () => {
    const pmpOnly = new Sim({ gw: { pcp: false, upnp: false, crossVersion: true } }).startCore().advance(10);
    expect(pmpOnly.core.status(pmpOnly.now).services.pcp).toMatchObject({
      available: false,
      reason: 'gateway speaks only NAT-PMP',
    });
    expect(pmpOnly.mappings[0]!.mapping?.protocol).toBe('pmp');
    const pcpOnly = new Sim({ gw: { pmp: false, upnp: false, crossVersion: true } }).startCore().advance(10);
    expect(pcpOnly.core.status(pcpOnly.now).services.pmp).toMatchObject({
      available: false,
      reason: 'gateway speaks only PCP',
    });
    expect(pcpOnly.mappings[0]!.mapping?.protocol).toBe('pcp');
    // Every enabled protocol answered, so the probe ended without waiting 250 ms.
    expect(pcpOnly.sinceStart(pcpOnly.mappings[0]!.at)).toBeLessThan(PORTMAP.PROBE_TIMEOUT_MS);
  });
});

describe('NAT-PMP mapping life', () => {
  it('renews at half the lifetime with the same port, without a mapping event', () => {
    const s = new Sim().startCore().advance(1000);
    const expires1 = s.core.mapping()!.expiresAt;
    s.advance(HALF);
    expect(s.gw.log.filter((l) => l.startsWith('pmp map'))).toHaveLength(2);
    expect(s.mappings).toHaveLength(1);
    expect(s.core.mapping()!.expiresAt).toBeGreaterThan(expires1);
    expect(s.core.counters.get('renewals')).toBe(1);
  });

  it('a router reboot (epoch backwards) is caught by the 60 s check and the mapping re-created', () => {
    const s = new Sim().startCore().advance(1000);
    s.gw.reboot(s.now);
    expect(s.gw.mappings.size).toBe(0);
    s.advance(PORTMAP.EPOCH_CHECK_INTERVAL_MS);
    expect(s.core.counters.get('epochResets')).toBe(1);
    expect(s.gw.mappings.size).toBe(1); // re-created with the same port, so no mapping event
    expect(s.mappings).toHaveLength(1);
    expect(s.events.some((e) => e.event === 'epoch-reset')).toBe(true);
  });

  it('after a reboot that gives another port, a `changed` event', () => {
    const s = new Sim().startCore().advance(1000);
    s.gw.reboot(s.now);
    s.gw.taken.add(41641);
    s.advance(PORTMAP.EPOCH_CHECK_INTERVAL_MS);
    expect(s.mappings.map((m) => m.reason)).toEqual(['created', 'changed']);
    expect(s.mappings[1]!.mapping?.external.port).toBe(41642);
    expect(s.mappings[1]!.previous?.external.port).toBe(41641);
  });

  it('a new public address seen by the epoch check updates the mapping', () => {
    const s = new Sim().startCore().advance(1000);
    s.gw.publicIp = '198.51.100.99';
    s.advance(PORTMAP.EPOCH_CHECK_INTERVAL_MS);
    expect(s.mappings.map((m) => m.reason)).toEqual(['created', 'public-ip-changed']);
    expect(s.core.mapping()!.external).toEqual({ ip: '198.51.100.99', port: 41641 });
  });

  it('a silent router: renewal retried every 30 s, the mapping lost at expiry, then the same port asked again', () => {
    const s = new Sim({ core: { lifetimeS: 120 } }).startCore().advance(1000);
    s.gw.silent = true;
    s.advance(60_000 + PORTMAP.REQUEST_TIMEOUT_MS);
    expect(s.core.counters.get('renewFailures')).toBe(1);
    expect(s.core.mapping()).toBeDefined();
    s.advance(60_000);
    expect(s.mappings.map((m) => m.reason)).toEqual(['created', 'expired']);
    expect(s.mappings[1]!.at).toBe(s.mappings[0]!.at + 120_000);
    expect(s.core.state).toBe('waiting'); // probed again at once: nothing answered
    s.gw.silent = false;
    s.gw.log.length = 0;
    s.advance(PORTMAP.RETRY_MIN_MS + 1000);
    expect(s.mappings.at(-1)?.reason).toBe('created');
    expect(s.gw.log).toContain('pmp map 41641->41641 120s');
  });

  it('retransmits at 250, 500, 1000, 2000 ms and gives up at 4 s, then falls back to PCP', () => {
    const s = new Sim({ gw: { upnp: false } });
    // The gateway answers the probe but NAT-PMP mapping requests vanish.
    const orig = s.gw.on5351.bind(s.gw);
    s.gw.on5351 = (b, f, n) => (b[0] === 0 && b[1] === 1 ? undefined : orig(b, f, n));
    s.startCore().advance(5000);
    const pmpMaps = s.sent('send').filter((a) => a.kind === 'send' && a.bytes[0] === 0 && a.bytes[1] === 1);
    expect(pmpMaps.map((a) => a.at - pmpMaps[0]!.at)).toEqual([0, 250, 750, 1750, 3750]);
    expect(s.mappings[0]!.mapping?.protocol).toBe('pcp');
  });

  it('NAT-PMP refused (NOT_AUTHORIZED) falls back to PCP, and the error is kept until a mapping succeeds', () => {
    const s = new Sim({ gw: { upnp: false } });
    s.gw.pmpMapResult = 2;
    s.startCore().advance(100);
    expect(s.mappings[0]!.mapping?.protocol).toBe('pcp');
    const failed = s.events.find((e) => e.event === 'failed')!;
    expect(failed.detail).toMatchObject({ protocol: 'pmp', reason: 'refused', resultCode: 2 });
    expect(s.core.status(s.now).lastError).toBeUndefined();
  });

  it('close releases with lifetime 0 and suggested port 0, then `closed`', () => {
    const s = new Sim().startCore().advance(1000);
    s.close();
    expect(s.mappings.at(-1)).toMatchObject({ reason: 'closed', mapping: undefined });
    expect(s.core.mapping()).toBeUndefined();
    s.advance(10);
    expect(s.gw.log.at(-1)).toBe('pmp map 41641->0 0s');
    expect(s.gw.mappings.size).toBe(0);
    expect(s.closedAt).toBe(s.start + 1000 + 1);
    expect(s.core.counters.get('released')).toBe(1);
    expect(s.core.pollTimeout()).toBeUndefined();
    expect(s.core.close(s.now)).toEqual([]);
  });

  it('close with a silent router gives up after 1 s', () => {
    const s = new Sim().startCore().advance(1000);
    s.gw.silent = true;
    s.close().advance(5000);
    expect(s.closedAt! - (s.start + 1000)).toBe(PORTMAP.RELEASE_TIMEOUT_MS);
  });

  it('close while probing ends at once; close during a map request releases what it may have created', () => {
    const a = new Sim().startCore().close();
    expect(a.closedAt).toBe(a.start);
    const b = new Sim({ gw: { pmp: false } }).startCore().advance(PORTMAP.PROBE_TIMEOUT_MS); // PCP MAP just sent
    b.close().advance(10);
    expect(b.gw.log.at(-1)).toBe('pcp map 41641->0 0s');
    expect(b.gw.mappings.size).toBe(0);
  });
});

describe('PCP mapping life', () => {
  it('renewals and the release repeat the nonce; the release removes the mapping', () => {
    const s = new Sim({ gw: { pmp: false, upnp: false } }).startCore().advance(1000);
    const nonce = s.gw.mappings.get('pcp 192.168.1.10:41641')!.nonce;
    s.advance(HALF);
    expect(s.gw.mappings.get('pcp 192.168.1.10:41641')!.nonce).toBe(nonce);
    expect(s.core.counters.get('renewals')).toBe(1);
    s.close().advance(10);
    expect(s.gw.mappings.size).toBe(0);
    expect(s.closedAt).toBeDefined();
  });

  it('drops a MAP answer with another nonce', () => {
    const s = new Sim({ gw: { pmp: false, upnp: false } }).startCore().advance(1);
    const orig = s.gw.on5351.bind(s.gw);
    s.gw.on5351 = (b, f, n) => {
      const ans = orig(b, f, n);
      if (ans && ans.length === 60) ans[24] = ans[24]! ^ 0xff; // corrupt the echoed nonce
      return ans;
    };
    s.advance(300);
    expect(s.core.counters.get('droppedUnexpected')).toBeGreaterThan(0);
    expect(s.mappings).toEqual([]);
  });

  it('ADDRESS_MISMATCH on MAP (a NAT in between) is a refusal', () => {
    const s = new Sim({ gw: { pmp: false, upnp: false } });
    s.gw.pcpMapResult = 12;
    s.startCore().advance(1000);
    expect(s.mappings).toEqual([]);
    expect(s.core.status(s.now)).toMatchObject({
      phase: 'waiting',
      services: { pcp: { available: false, reason: 'ADDRESS_MISMATCH' } },
    });
    expect(s.core.status(s.now).lastError).toMatchObject({ protocol: 'pcp', reason: 'refused', resultCode: 12 });
  });

  it('epoch going backwards on a PCP ANNOUNCE re-creates the mapping', () => {
    const s = new Sim({ gw: { pmp: false, upnp: false } }).startCore().advance(1000);
    s.gw.reboot(s.now);
    s.advance(PORTMAP.EPOCH_CHECK_INTERVAL_MS);
    expect(s.core.counters.get('epochResets')).toBe(1);
    expect(s.gw.mappings.size).toBe(1);
  });
});

describe('UPnP mapping life', () => {
  it('WANIPConnection:1: AddPortMapping with a random port, GetExternalIPAddress, DeletePortMapping on close', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false } }).startCore().advance(1000);
    const m = s.core.mapping()!;
    expect(m.protocol).toBe('upnp');
    expect(m.external.ip).toBe('203.0.113.7');
    expect(m.external.port).toBeGreaterThanOrEqual(1024);
    expect(s.gw.log.filter((l) => l.startsWith('soap') || l.startsWith('http'))).toEqual([
      'http describe',
      `soap AddPortMapping ${m.external.port} lease 7200`,
      'soap GetExternalIPAddress',
    ]);
    s.advance(HALF);
    expect(s.gw.log.filter((l) => l.startsWith('http describe'))).toHaveLength(1); // the description is cached
    expect(s.core.counters.get('renewals')).toBe(1);
    s.close().advance(10);
    expect(s.gw.log.at(-1)).toBe(`soap DeletePortMapping ${m.external.port}`);
    expect(s.gw.mappings.size).toBe(0);
    expect(s.core.counters.get('released')).toBe(1);
  });

  it('WANIPConnection:2 uses AddAnyPortMapping and the port the router reserved', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false, upnp: { service: 'WANIPConnection:2' } } });
    s.startCore().advance(1);
    s.gw.taken.add(s.core.prevPort ?? -1);
    s.advance(1000);
    expect(s.gw.log.some((l) => l.startsWith('soap AddAnyPortMapping'))).toBe(true);
    const [ext] = [...s.gw.mappings.values()].map((x) => x.externalPort);
    expect(s.core.mapping()!.external.port).toBe(ext);
  });

  it('error 725 OnlyPermanentLeasesSupported: retried with lease 0, mapping marked permanent', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false, upnp: { permanentOnly: true } } }).startCore().advance(1000);
    expect(s.gw.log.filter((l) => l.startsWith('soap Add')).map((l) => l.replace(/ \d+ /, ' P '))).toEqual([
      'soap AddPortMapping P lease 7200',
      'soap AddPortMapping P lease 0',
    ]);
    expect(s.core.mapping()).toMatchObject({ permanent: true, lifetimeS: 7200 });
    expect(s.core.counters.get('leaseZeroRetries')).toBe(1);
  });

  it('error 718 ConflictInMappingEntry: another random port', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false }, seed: 3 });
    // The first random port the core will pick with this seed is taken by another host.
    const probe = new Sim({ gw: { pmp: false, pcp: false }, seed: 3 }).startCore().advance(1000);
    s.gw.taken.add(probe.core.mapping()!.external.port);
    s.startCore().advance(1000);
    expect(s.core.counters.get('conflictRetries')).toBe(1);
    expect(s.core.mapping()!.external.port).not.toBe(probe.core.mapping()!.external.port);
  });

  it('ignores an SSDP LOCATION that is not on the gateway', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false, upnp: { locationHost: '192.168.1.77' } } })
      .startCore()
      .advance(1000);
    expect(s.mappings).toEqual([]);
    expect(s.core.counters.get('droppedForeignLocation')).toBeGreaterThan(0);
    expect(s.sent('http')).toEqual([]);
    expect(s.strays).toEqual([]);
  });

  it('an HTTP failure on renewal keeps the mapping until it expires', () => {
    const s = new Sim({ gw: { pmp: false, pcp: false }, core: { lifetimeS: 100 } }).startCore().advance(1000);
    s.gw.silent = true;
    s.advance(50_000 + PORTMAP.HTTP_TIMEOUT_MS);
    expect(s.core.counters.get('renewFailures')).toBe(1);
    expect(s.core.mapping()).toBeDefined();
    s.advance(50_000);
    expect(s.mappings.map((m) => m.reason)).toEqual(['created', 'expired']);
  });
});

describe('hostile and stray input', () => {
  it('drops datagrams from anyone but the gateway, and from the wrong port', () => {
    const s = new Sim().startCore();
    const good = encodeNatPmpResponse({ op: 'public-address', resultCode: 0, epoch: 1, publicIp: '203.0.113.9' });
    expect(s.core.handleDatagram('pmp', good, { ip: '192.168.1.66', port: 5351 }, s.now)).toEqual([]);
    expect(s.core.handleDatagram('pmp', good, { ip: '192.168.1.1', port: 5350 }, s.now)).toEqual([]);
    expect(s.core.counters.get('droppedForeign')).toBe(2);
    expect(s.core.status(s.now).services.pmp.publicIp).toBeUndefined();
  });

  it('stale HTTP results are dropped', () => {
    const s = new Sim().startCore();
    expect(s.core.handleHttp(999, { ok: true, status: 200, body: '' }, s.now)).toEqual([]);
    expect(s.core.counters.get('droppedStaleHttp')).toBe(1);
  });

  it('never throws on arbitrary datagrams or HTTP bodies, in any phase', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.record({ k: fc.constant('pmp' as const), b: fc.uint8Array({ maxLength: 64 }) }),
            fc.record({ k: fc.constant('ssdp' as const), b: fc.uint8Array({ maxLength: 64 }) }),
            fc.record({
              k: fc.constant('http' as const),
              status: fc.integer({ min: 0, max: 600 }),
              body: fc.string({ maxLength: 100 }),
            }),
            fc.record({ k: fc.constant('time' as const), ms: fc.integer({ min: 0, max: 4_000_000 }) }),
          ),
          { maxLength: 30 },
        ),
        fc.constantFrom(0, 1, 3, 60),
        (steps, pre) => {
          const s = new Sim({ gw: { pmp: pre !== 3 } }).startCore().advance(pre);
          for (const st of steps) {
            if (st.k === 'time') s.advance(st.ms);
            else if (st.k === 'http') {
              const op = s.core.op;
              const id = op?.type === 'upnp' ? op.httpId : 1;
              s.run(s.core.handleHttp(id, { ok: true, status: st.status, body: st.body }, s.now));
            } else {
              const b = st.b.slice();
              if (st.k === 'pmp' && b.length > 1) b[0] = b[0]! & 2; // mostly NAT-PMP / PCP versions
              s.run(s.core.handleDatagram(st.k, b, { ip: '192.168.1.1', port: st.k === 'pmp' ? 5351 : 1900 }, s.now));
            }
          }
          expect(s.strays).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects bad options', () => {
    const base = { internalPort: 1, gateway: '192.168.1.1', localAddress: '192.168.1.10' };
    expect(() => new PortmapCore({ ...base, internalPort: 0 })).toThrow(RangeError);
    expect(() => new PortmapCore({ ...base, gateway: 'router' })).toThrow(TypeError);
    expect(() => new PortmapCore({ ...base, protocols: [] })).toThrow(TypeError);
    expect(() => new PortmapCore({ ...base, protocols: ['nat' as 'pmp'] })).toThrow(TypeError);
    expect(() => new PortmapCore({ ...base, lifetimeS: 0 })).toThrow(RangeError);
  });
});
