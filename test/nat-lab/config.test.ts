/**
 * The pure parts of nat-lab: profile and link parsing, the nft rules each profile gets, the naming plan, the
 * matrix's expected outcomes and its reports. (The behaviour of the rules is measured by test/netns/, as root.)
 */
import { describe, expect, it } from 'vitest';
import {
  PROFILE_NAMES,
  expectedBehaviour,
  natRuleset,
  parseProfile,
  type RulesetOptions,
} from '../../nat-lab/profiles.js';
import { LINK_PRESETS, delayLineArgs, lossRuleset, netemArgs, parseLink } from '../../nat-lab/link.js';
import { ifName, isPrefix, newPrefix, nthAddr, parseCidr } from '../../nat-lab/plan.js';
import {
  MATRIX_PROFILES,
  expectedOutcome,
  matrixCells,
  MESHSOCK_PEER_CAPS,
  STAND_IN_PEER_CAPS,
  type CellResult,
  type MatrixReport,
} from '../../nat-lab/matrix.js';
import { matrixHtml, matrixMarkdown } from '../../nat-lab/matrix-report.js';
import { isMeshsockError } from '../../src/errors.js';

const base: RulesetOptions = {
  mode: 'easy',
  wan: 'nl0000-wan',
  lan: 'nl0000-lan',
  lanCidr: '192.168.1.0/24',
  wanIp: '198.18.1.2',
  hairpin: false,
  stateTimeoutS: 120,
};

describe('nat-lab profiles', () => {
  it('parses names and +hairpin, and rejects the rest with BAD_CONFIG', () => {
    expect(parseProfile('easy')).toEqual({ name: 'easy', hairpin: false });
    expect(parseProfile('same-lan+hairpin')).toEqual({ name: 'same-lan', hairpin: true });
    for (const bad of ['bogus', 'easy+turbo', 'hard+hairpin', 'cgnat+hairpin', 'udp-blocked+hairpin', '']) {
      let err: unknown;
      try {
        parseProfile(bad);
      } catch (e) {
        err = e;
      }
      expect(isMeshsockError(err, 'MESHSOCK_ERR_BAD_CONFIG'), bad).toBe(true);
    }
  });

  it('promises the RFC 4787 classes of DESIGN.md', () => {
    const t = Object.fromEntries(PROFILE_NAMES.map((p) => [p, expectedBehaviour(p)]));
    expect([t.easy!.mapping, t.easy!.filtering]).toEqual(['EIM', 'APDF']);
    expect([t['easy-af']!.mapping, t['easy-af']!.filtering]).toEqual(['EIM', 'ADF']);
    expect([t['full-cone']!.mapping, t['full-cone']!.filtering]).toEqual(['EIM', 'EIF']);
    expect([t.hard!.mapping, t.hard!.portPreserved]).toEqual(['APDM', false]);
    expect([t['udp-blocked']!.udp, t['udp-blocked']!.tcp443, t['udp-blocked']!.tcpOther]).toEqual([false, true, false]);
    expect(t.cgnat!.hairpin).toBe(false);
    expect(t.portmap!.portmap).toBe(true);
    expect(expectedBehaviour('same-lan+hairpin').hairpin).toBe(true);
  });

  it('writes rules that replace the previous table atomically', () => {
    expect(natRuleset(base)).toMatch(/^table ip natlab \{\}\ndelete table ip natlab\ntable ip natlab \{/);
  });

  it('easy: plain masquerade, no learned state', () => {
    const r = natRuleset(base);
    expect(r).toMatch(/oifname "nl0000-wan" masquerade\n/);
    expect(r).not.toMatch(/pmap|seen|random/);
  });

  it('hard: masquerade random', () => {
    expect(natRuleset({ ...base, mode: 'hard' })).toMatch(/masquerade random/);
  });

  it('full-cone: inbound DNAT through the learned port map', () => {
    const r = natRuleset({ ...base, mode: 'full-cone' });
    expect(r).toMatch(
      /map pmap \{ type inet_service : ipv4_addr \. inet_service; flags dynamic,timeout; timeout 120s; \}/,
    );
    expect(r).toMatch(/iifname "nl0000-wan" meta l4proto udp dnat ip to udp dport map @pmap/);
    expect(r).toMatch(/update @pmap \{ udp sport : ct original ip saddr \. ct original proto-src \}/);
  });

  it('easy-af: DNAT only for (mapped port, address) pairs the host has sent to', () => {
    const r = natRuleset({ ...base, mode: 'easy-af' });
    expect(r).toMatch(/udp dport \. ip saddr @seen dnat ip to udp dport map @pmap/);
    expect(r).toMatch(/update @seen \{ udp sport \. ip daddr \}/);
  });

  it('udp-blocked: only TCP 80/443 are forwarded out', () => {
    expect(natRuleset({ ...base, mode: 'udp-blocked' })).toMatch(
      /iifname "nl0000-lan" oifname "nl0000-wan" tcp dport \{ 80, 443 \} accept/,
    );
  });

  it('hairpin: LAN-side DNAT to the mapping and SNAT to the public address', () => {
    const r = natRuleset({ ...base, hairpin: true });
    expect(r).toMatch(/iifname "nl0000-lan" ip daddr 198\.18\.1\.2 meta l4proto udp dnat ip to udp dport map @pmap/);
    expect(r).toMatch(/oifname "nl0000-lan" ip saddr 192\.168\.1\.0\/24 ct status dnat snat ip to 198\.18\.1\.2/);
  });

  it("portmap: lets the STUN server answer the router (miniupnpd's RFC 5780 check)", () => {
    expect(natRuleset({ ...base, mode: 'portmap' })).toMatch(
      /ip saddr \{ 203\.0\.113\.1, 203\.0\.113\.2 \} udp sport \{ 3478, 3479 \} accept/,
    );
  });
});

describe('nat-lab link presets', () => {
  it('has the named presets and parses custom ones', () => {
    expect(parseLink('wan-20ms')).toEqual({ rttMs: 20, jitterMs: 0, lossPct: 0 });
    expect(parseLink('lossy-5').lossPct).toBe(5);
    expect(parseLink('rtt=30,loss=2')).toEqual({ rttMs: 30, jitterMs: 0, lossPct: 2 });
    expect(Object.keys(LINK_PRESETS)).toEqual([
      'lan',
      'wan-20ms',
      'wan-80ms',
      'wan-200ms',
      'lossy-1',
      'lossy-5',
      'jitter',
    ]);
    for (const bad of ['warp', 'rtt=', 'rtt=-1', 'loss=1.5', 'speed=9', 'loss=101'])
      expect(() => parseLink(bad), bad).toThrow(/link/);
  });

  it('splits the round trip over both directions', () => {
    expect(netemArgs({ rttMs: 20, jitterMs: 10, lossPct: 1 })).toEqual(['netem', 'delay', '10ms', '5ms', 'loss', '1%']);
    expect(delayLineArgs({ rttMs: 20, jitterMs: 10, lossPct: 0 }, 'x', 'y')).toEqual([
      '-a',
      'x',
      '-b',
      'y',
      '-d',
      '10000',
      '-D',
      '10000',
      '-j',
      '5000',
      '-J',
      '5000',
    ]);
    expect(lossRuleset('nl0000-wan', 5)).toMatch(
      /hook ingress device "nl0000-wan" priority filter; meta protocol ip numgen random mod 100 < 5 drop;/,
    );
  });
});

describe('nat-lab naming plan', () => {
  it('prefixes are nl + 4 hex and interface names fit IFNAMSIZ', () => {
    const p = newPrefix();
    expect(isPrefix(p)).toBe(true);
    expect(ifName(p, 's-abcd')).toHaveLength(13);
    expect(() => ifName(p, 'much-too-long')).toThrow(RangeError);
    expect(isPrefix('nl12345')).toBe(false);
  });

  it('computes LAN addresses', () => {
    const n = parseCidr('198.51.100.16/28')!;
    expect(nthAddr(n.base, 1)).toBe('198.51.100.17');
    expect(parseCidr('192.168.1.77/24')).toEqual({ base: parseCidr('192.168.1.0/24')!.base, len: 24 });
    expect(parseCidr('1.2.3.4/33')).toBeUndefined();
  });
});

describe('nat-lab matrix expectations', () => {
  const derpCells = matrixCells(MATRIX_PROFILES, false).filter(([a, b]) => expectedOutcome(a, b).path === 'derp');

  it('is symmetric', () => {
    for (const [a, b] of matrixCells(MATRIX_PROFILES, false))
      expect(expectedOutcome(a, b).path, `${a}×${b}`).toBe(expectedOutcome(b, a).path);
  });

  it('relays exactly: anything with udp-blocked, hard × hard, and hard × an address-and-port-filtering NAT', () => {
    const names = derpCells.map(([a, b]) => `${a}×${b}`).sort();
    const want = new Set<string>();
    for (const p of MATRIX_PROFILES) {
      want.add(`udp-blocked×${p}`);
      want.add(`${p}×udp-blocked`);
    }
    for (const p of ['hard', 'easy', 'cgnat']) {
      want.add(`hard×${p}`);
      want.add(`${p}×hard`);
    }
    expect(names).toEqual([...want].sort());
    for (const [a, b] of derpCells) expect(expectedOutcome(a, b).reason.length).toBeGreaterThan(20);
  });

  it('a peer without port mapping relays portmap × hard too, and says why; meshsock maps ports', () => {
    const noPortmap = { portMapping: false };
    const changed = matrixCells(MATRIX_PROFILES, false)
      .filter(([a, b]) => expectedOutcome(a, b, noPortmap).path !== expectedOutcome(a, b).path)
      .map(([a, b]) => `${a}×${b}`)
      .sort();
    expect(changed).toEqual(['hard×portmap', 'portmap×hard']);
    expect(expectedOutcome('portmap', 'hard', noPortmap).reason).toMatch(/does not ask for a mapping/);
    expect(expectedOutcome('hard', 'portmap', STAND_IN_PEER_CAPS).path).toBe('direct');
    expect(expectedOutcome('hard', 'portmap', MESHSOCK_PEER_CAPS).path).toBe('direct');
  });

  it('same-lan is direct; a full matrix is every ordered pair plus two same-lan cells', () => {
    expect(expectedOutcome('same-lan', 'same-lan').path).toBe('direct');
    expect(matrixCells(MATRIX_PROFILES)).toHaveLength(MATRIX_PROFILES.length ** 2 + 2);
  });
});

describe('nat-lab matrix reports', () => {
  const cell = (a: string, b: string, outcome: CellResult['outcome'], pass: boolean): CellResult => ({
    a,
    b,
    expected: expectedOutcome(a, b),
    outcome,
    pass,
    ...(pass ? {} : { failure: 'expected <direct>, got broken' }),
    firstDatagramMs: outcome === 'broken' ? null : 420,
    directMs: outcome === 'direct' ? 810 : null,
    peers: [],
    labPrefix: 'nl0000',
    buildMs: 700,
    runMs: 1500,
  });
  const report: MatrixReport = {
    startedAt: 't0',
    finishedAt: 't1',
    peer: 'stand-in-peer',
    derp: 'stand-in-relay',
    windowMs: 4000,
    link: null,
    profiles: ['easy', 'hard'],
    cells: [
      cell('easy', 'easy', 'direct', true),
      cell('easy', 'hard', 'derp', true),
      cell('hard', 'easy', 'broken', false),
      cell('hard', 'hard', 'derp', true),
      cell('same-lan', 'same-lan', 'direct', true),
    ],
    passed: 4,
    failed: 1,
  };

  it('Markdown: grid with outcome and both times, failures listed', () => {
    const md = matrixMarkdown(report);
    expect(md).toContain('| A \\ B | easy | hard |');
    expect(md).toContain('| **easy** | 🟢 direct 0.42 s / 0.81 s | 🟠 DERP 0.42 s / – |');
    expect(md).toContain('| **hard** | 🔴 broken ✗ | 🟠 DERP 0.42 s / – |');
    expect(md).toContain('| same-lan | 🟢 direct 0.42 s / 0.81 s |');
    expect(md).toMatch(/- \*\*hard × easy\*\* \(lab nl0000\): expected <direct>, got broken/);
  });

  it('HTML: coloured cells, escaped text, nothing external', () => {
    const html = matrixHtml(report);
    expect(html).toMatch(/<td class="direct" title=/);
    expect(html).toMatch(/<td class="broken fail" title=/);
    expect(html).toContain('expected &lt;direct&gt;, got broken');
    expect(html).not.toMatch(/<script|<link|src=|http/);
  });
});
