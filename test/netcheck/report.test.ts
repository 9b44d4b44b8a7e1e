import { describe, expect, it } from 'vitest';
import { ReportBuilder, reportGlobalAddrs, reportToJSON, PORTMAP_NOT_CHECKED } from '../../src/netcheck/report.js';

const S1 = { ip: '192.0.2.1', port: 3478 };
const S2 = { ip: '192.0.2.2', port: 3478 };
const S3 = { ip: '2001:db8::3', port: 3478 };
const ME = { ip: '198.51.100.9', port: 41641 };

describe('ReportBuilder', () => {
  it('starts empty: no UDP, mapping unknown, every probe would help', () => {
    const b = new ReportBuilder(true, true, 3);
    const r = b.finish(new Date(0), 0, 0, 'none');
    expect(r).toMatchObject({
      udp: false,
      ipv4: false,
      ipv6: false,
      ipv4CanSend: false,
      mappingVariesByDestIP: undefined,
    });
    expect(r.portMapping).toEqual({ checked: false, reason: PORTMAP_NOT_CHECKED });
    expect(r.upnp).toBeUndefined();
    expect(b.probeWouldHelp(1, 4)).toBe(true);
  });

  it('records latency minimum per region and family, the first mapping and counters', () => {
    const b = new ReportBuilder(true, true, 3);
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 30 });
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 20 });
    b.addStun({ regionId: 2, server: S3, family: 6, mapped: { ip: '2001:db8::9', port: 5 }, rttMs: 15 });
    const r = b.finish(new Date(0), 42, 2, 'best');
    expect(r.udp).toBe(true);
    expect([...r.regionLatency]).toEqual([
      [1, 20],
      [2, 15],
    ]);
    expect([...r.regionV4Latency]).toEqual([[1, 20]]);
    expect([...r.regionV6Latency]).toEqual([[2, 15]]);
    expect(r).toMatchObject({ ipv4: true, ipv6: true, ipv4CanSend: true, ipv6CanSend: true, globalV4: ME });
    expect(r.globalV6).toEqual({ ip: '2001:db8::9', port: 5 });
    expect([...r.globalV4Counters]).toEqual([['198.51.100.9:41641', 2]]);
    // Two replies from the same server say nothing about mapping behaviour.
    expect(r.mappingVariesByDestIP).toBeUndefined();
  });

  it('MappingVariesByDestIP: false when two servers agree, true (and sticky) when they differ', () => {
    const b = new ReportBuilder(true, false, 3);
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 10 });
    expect(b.probeWouldHelp(1, 4)).toBe(true);
    b.addStun({ regionId: 2, server: S2, family: 4, mapped: ME, rttMs: 10 });
    expect(b.finish(new Date(0), 0, 0, 'none').mappingVariesByDestIP).toBe(false);
    expect(b.probeWouldHelp(1, 4)).toBe(false);
    b.addStun({ regionId: 3, server: S2, family: 4, mapped: { ...ME, port: 1 }, rttMs: 10 });
    expect(b.finish(new Date(0), 0, 0, 'none').mappingVariesByDestIP).toBe(true);
    b.addStun({ regionId: 3, server: { ...S1, port: 1 }, family: 4, mapped: ME, rttMs: 10 });
    expect(b.finish(new Date(0), 0, 0, 'none').mappingVariesByDestIP).toBe(true);
  });

  it('probeWouldHelp: new region yes; first v6 yes; v4 only while the mapping is unknown', () => {
    const b = new ReportBuilder(false, true, 3);
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 10 });
    expect(b.probeWouldHelp(2, 4)).toBe(true);
    expect(b.probeWouldHelp(1, 6)).toBe(true);
    b.addStun({ regionId: 1, server: S3, family: 6, mapped: { ip: '2001:db8::9', port: 5 }, rttMs: 10 });
    expect(b.probeWouldHelp(1, 6)).toBe(false);
    expect(b.probeWouldHelp(1, 4)).toBe(true);
  });

  it('signals "enough regions" exactly once, with the stop delay (doubled on full reports)', () => {
    const full = new ReportBuilder(true, false, 2);
    expect(full.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 30 })).toBe(false);
    expect(full.addStun({ regionId: 2, server: S2, family: 4, mapped: ME, rttMs: 50 })).toBe(true);
    expect(full.addStun({ regionId: 3, server: S2, family: 4, mapped: ME, rttMs: 5 })).toBe(false);
    expect(full.stopAfterMs).toBe(100);
    const inc = new ReportBuilder(false, false, 1);
    inc.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 30 });
    expect(inc.stopAfterMs).toBe(30);
  });

  it('HTTP latency fills region latency without claiming UDP', () => {
    const b = new ReportBuilder(true, false, 3);
    b.noteSend(4, false);
    b.addHttpLatency(7, 33, 4);
    const r = b.finish(new Date(0), 0, 7, 'best');
    expect(r).toMatchObject({ udp: false, ipv4: true, ipv4CanSend: false });
    expect([...r.httpLatencyRegions]).toEqual([7]);
    expect(r.regionLatency.get(7)).toBe(33);
  });
});

describe('report helpers', () => {
  it('reportGlobalAddrs: first mapping plus any other seen twice', () => {
    const b = new ReportBuilder(true, false, 9);
    const other = { ip: '198.51.100.10', port: 41641 };
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 1 });
    b.addStun({ regionId: 2, server: S2, family: 4, mapped: other, rttMs: 1 });
    expect(reportGlobalAddrs(b.finish(new Date(0), 0, 0, 'none')).v4).toEqual([ME]);
    b.addStun({ regionId: 3, server: { ip: '192.0.2.3', port: 1 }, family: 4, mapped: other, rttMs: 1 });
    expect(reportGlobalAddrs(b.finish(new Date(0), 0, 0, 'none')).v4).toEqual([ME, other]);
  });

  it('reportToJSON is JSON-safe and keeps "not checked" as null', () => {
    const b = new ReportBuilder(true, true, 3);
    b.addStun({ regionId: 1, server: S1, family: 4, mapped: ME, rttMs: 12.5 });
    const j = reportToJSON(b.finish(new Date(1_700_000_000_000), 3, 1, 'best'));
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
    expect(j).toMatchObject({
      time: '2023-11-14T22:13:20.000Z',
      udp: true,
      upnp: null,
      mappingVariesByDestIP: null,
      globalV4: '198.51.100.9:41641',
      globalV6: null,
      regionLatency: { '1': 12.5 },
      preferredDerp: 1,
    });
  });
});
