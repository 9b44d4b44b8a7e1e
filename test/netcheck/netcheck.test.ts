/**
 * netcheck against real local STUN + DERP servers on loopback.
 */
import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDerpMap, type DerpMap } from '../../src/derp/derp-map.js';
import { DerpServer } from '../../src/derp/server/index.js';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import { normalizeIp } from '../../src/internal/addr.js';
import { FakeClock } from '../../src/internal/clock.js';
import { Netcheck, openStandaloneNetcheck } from '../../src/netcheck/netcheck.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function derpWithStun(): Promise<DerpServer> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 });
  cleanup.push(() => s.close());
  return s;
}

function mapOf(servers: DerpServer[], stunPorts?: number[]): DerpMap {
  return parseDerpMap({
    regions: servers.map((s, i) => ({
      regionId: 901 + i,
      regionCode: `r${901 + i}`,
      regionName: `Region ${901 + i}`,
      nodes: [{ url: `http://127.0.0.1:${s.address.port}`, stunPort: stunPorts?.[i] ?? s.stunAddress!.port }],
    })),
  });
}

/** A UDP port with nothing listening: STUN to it is never answered. */
async function deadUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** A UDP relay on loopback to `target`, delaying each datagram `delayMs` each way; one client at a time. */
async function udpDelayRelay(target: number, delayMs: number): Promise<number> {
  const front = dgram.createSocket('udp4');
  const back = dgram.createSocket('udp4');
  await new Promise<void>((r) => front.bind(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => back.bind(0, '127.0.0.1', () => r()));
  let client: dgram.RemoteInfo | undefined;
  front.on('message', (msg, rinfo) => {
    client = rinfo;
    setTimeout(() => {
      try {
        back.send(msg, target, '127.0.0.1');
      } catch {
        // closed during cleanup
      }
    }, delayMs);
  });
  back.on('message', (msg) => {
    const c = client;
    if (c)
      setTimeout(() => {
        try {
          front.send(msg, c.port, c.address);
        } catch {
          // closed during cleanup
        }
      }, delayMs);
  });
  cleanup.push(() => new Promise<void>((r) => front.close(() => back.close(() => r()))));
  return front.address().port;
}

describe('netcheck on loopback', () => {
  it('standalone: UDP works, GlobalV4 is our socket, two agreeing servers → MappingVariesByDestIP false', async () => {
    const servers = [await derpWithStun(), await derpWithStun()];
    const nc = await openStandaloneNetcheck({ derpMap: mapOf(servers), bindAddress4: '127.0.0.1', verbose: true });
    cleanup.push(() => nc.close());
    const r = await nc.getReport();
    expect(r.udp).toBe(true);
    expect(r.ipv4).toBe(true);
    expect(r.ipv4CanSend).toBe(true);
    expect(r.globalV4).toEqual({ ip: '127.0.0.1', port: nc.local.v4!.port });
    expect(r.mappingVariesByDestIP).toBe(false);
    expect([...r.regionLatency.keys()].sort()).toEqual([901, 902]);
    expect([...r.regionV4Latency.keys()].sort()).toEqual([901, 902]);
    expect([901, 902]).toContain(r.preferredDerp);
    expect(r.full).toBe(true);
    expect(r.upnp).toBeUndefined();
    expect(r.portMapping.checked).toBe(false);
    expect(servers.every((s) => s.stats().stun!.answered >= 1)).toBe(true);
    // The second report is incremental and keeps the same home (hysteresis / unchanged).
    const r2 = await nc.getReport();
    expect(r2.full).toBe(false);
    expect(r2.preferredDerp).toBe(r.preferredDerp);
  });

  it("on the caller's socket: the mapping is that socket's own port", async () => {
    const servers = [await derpWithStun(), await derpWithStun()];
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => sock.close(() => r())));
    const nc = new Netcheck({
      derpMap: mapOf(servers),
      families: { v4: true, v6: false },
      send: (bytes, to) =>
        new Promise<void>((resolve, reject) => sock.send(bytes, to.port, to.ip, (e) => (e ? reject(e) : resolve()))),
    });
    cleanup.push(() => nc.close());
    let stunSeen = 0;
    sock.on('message', (msg, rinfo) => {
      // The socket's owner demultiplexes: STUN goes to netcheck, anything else would go to the application.
      if (nc.handleStunPacket(new Uint8Array(msg), { ip: normalizeIp(rinfo.address), port: rinfo.port })) stunSeen++;
    });
    const r = await nc.getReport();
    expect(r.globalV4).toEqual({ ip: '127.0.0.1', port: sock.address().port });
    expect(r.mappingVariesByDestIP).toBe(false);
    expect(r.ipv4CanSend).toBe(true);
    expect(stunSeen).toBeGreaterThanOrEqual(2);
    expect(nc.lastReport).toBe(r);
  });

  it('home from real latency; a relayed server sees another mapping → MappingVariesByDestIP true', async () => {
    const servers = [await derpWithStun(), await derpWithStun()];
    // Region 902's STUN goes through a UDP relay that holds each datagram 30 ms each way and forwards from its own
    // socket: the server sees a different source port, just as behind an endpoint-dependent NAT.
    const relay = await udpDelayRelay(servers[1]!.stunAddress!.port, 30);
    const nc = await openStandaloneNetcheck({
      derpMap: mapOf(servers, [servers[0]!.stunAddress!.port, relay]),
      bindAddress4: '127.0.0.1',
      verbose: true,
    });
    cleanup.push(() => nc.close());
    const r = await nc.getReport();
    expect(r.regionLatency.get(902)!).toBeGreaterThanOrEqual(60);
    expect(r.regionLatency.get(901)!).toBeLessThan(r.regionLatency.get(902)!);
    expect(r).toMatchObject({ preferredDerp: 901, preferredDerpReason: 'best', mappingVariesByDestIP: true });
    expect(r.globalV4Counters.size).toBe(2);
  });

  it('one STUN server answering: MappingVariesByDestIP stays unknown', async () => {
    const s = await derpWithStun();
    const dead = await deadUdpPort();
    const clock = new FakeClock();
    const nc = await openStandaloneNetcheck({
      derpMap: mapOf([s, s], [s.stunAddress!.port, dead]),
      bindAddress4: '127.0.0.1',
      clock,
    });
    cleanup.push(() => nc.close());
    const p = nc.getReport();
    // Let the live server answer, then run out the 3 s STUN phase on the fake clock.
    await expect.poll(() => s.stats().stun!.answered).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(3000);
    const r = await p;
    expect(r.udp).toBe(true);
    expect(r.mappingVariesByDestIP).toBeUndefined();
    expect([...r.regionLatency.keys()]).toEqual([901]);
    expect(r.preferredDerp).toBe(901);
  });

  it('UDP blocked: falls back to HTTP latency on /derp/latency-check', async () => {
    const servers = [await derpWithStun(), await derpWithStun()];
    const dead = await deadUdpPort();
    const clock = new FakeClock();
    const nc = await openStandaloneNetcheck({
      derpMap: mapOf(servers, [dead, dead]),
      bindAddress4: '127.0.0.1',
      clock,
    });
    cleanup.push(() => nc.close());
    const p = nc.getReport();
    await new Promise((r) => setTimeout(r, 20));
    clock.advance(3000); // the STUN phase gives up: no reply at all
    const r = await p;
    expect(r.udp).toBe(false);
    expect(r.ipv4CanSend).toBe(true);
    expect([...r.httpLatencyRegions].sort()).toEqual([901, 902]);
    expect([...r.regionLatency.keys()].sort()).toEqual([901, 902]);
    expect(r.regionV4Latency.size).toBe(0);
    expect(r.globalV4).toBeUndefined();
    expect([901, 902]).toContain(r.preferredDerp);
  });

  it('getReport honours its AbortSignal and close()', async () => {
    const s = await derpWithStun();
    const dead = await deadUdpPort();
    const nc = await openStandaloneNetcheck({
      derpMap: mapOf([s], [dead]),
      bindAddress4: '127.0.0.1',
      clock: new FakeClock(),
    });
    cleanup.push(() => nc.close());
    const ac = new AbortController();
    const p = nc.getReport({ signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.ABORTED));
    await nc.close();
    await expect(nc.getReport()).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.CLOSED));
  });

  it('refuses to run without a DERP map or a transport', () => {
    expect(() => new Netcheck({} as never)).toThrow(/DERP map/);
    expect(
      () => new Netcheck({ derpMap: parseDerpMap({ regions: [{ regionId: 1, nodes: [{ hostName: 'x.example' }] }] }) }),
    ).toThrow(/"send" or "stunClient"/);
  });
});
