import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatLatency, formatReport, loadDerpMap, parseDuration, run } from '../../src/cli/netcheck.js';
import { parseDerpMap } from '../../src/derp/derp-map.js';
import { DerpServer } from '../../src/derp/server/index.js';
import { ReportBuilder } from '../../src/netcheck/report.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function io() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } },
    out: () => out.join(''),
    err: () => err.join(''),
  };
}

async function mapFile(): Promise<string> {
  const servers = [];
  for (let i = 0; i < 2; i++) {
    const s = await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 });
    cleanup.push(() => s.close());
    servers.push(s);
  }
  const dir = await mkdtemp(join(tmpdir(), 'meshsock-netcheck-'));
  cleanup.push(() => rm(dir, { recursive: true }));
  const file = join(dir, 'derpmap.json');
  // Tailscale's DERPMap JSON, as Headscale would serve it.
  const regions = Object.fromEntries(
    servers.map((s, i) => [
      String(901 + i),
      {
        RegionID: 901 + i,
        RegionCode: `lab${i + 1}`,
        RegionName: `Lab ${i + 1}`,
        Nodes: [
          {
            Name: `90${i + 1}a`,
            RegionID: 901 + i,
            HostName: '127.0.0.1',
            DERPPort: s.address.port,
            STUNPort: s.stunAddress!.port,
            InsecureForTests: true,
          },
        ],
      },
    ]),
  );
  await writeFile(file, JSON.stringify({ Regions: regions }));
  return file;
}

describe('meshsock netcheck', () => {
  it('requires a DERP map and says there are no default servers', async () => {
    const t = io();
    expect(await run([], t.io)).toBe(2);
    expect(t.err()).toMatch(/a DERP map is required/);
    expect(t.err()).toMatch(/no built-in or default DERP servers/);
  });

  it('rejects bad flags, formats, durations, URLs and maps with exit code 2 or 1', async () => {
    for (const [argv, code, msg] of [
      [['--nope'], 2, /Unknown option/],
      [['--derp-map', '{}', '--format', 'xml'], 2, /unknown output format "xml"/],
      [['--derp-map', '{}', '--every', 'soon'], 2, /not a duration/],
      [['--derp-map', '{}', '--bind-port', '70000'], 2, /not a port/],
      [['--derp-map', '{"Regions":{}}'], 2, /has no regions/],
      [['--derp-map', 'https://controlplane.example/derpmap/default'], 1, /not a URL/],
      [['--derp-map', '/nonexistent/derpmap.json'], 1, /cannot read DERP map file/],
    ] as const) {
      const t = io();
      expect(await run([...argv], t.io)).toBe(code);
      expect(t.err()).toMatch(msg);
    }
  });

  it('prints the human report like tailscale netcheck', async () => {
    const file = await mapFile();
    const t = io();
    expect(await run(['--derp-map', file], t.io)).toBe(0);
    const lines = t.out().split('\n');
    expect(lines[1]).toBe('Report:');
    expect(t.out()).toMatch(/^\t\* Time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}/m);
    expect(t.out()).toContain('\t* UDP: true\n');
    expect(t.out()).toMatch(/^\t\* IPv4: yes, 127\.0\.0\.1:\d+$/m);
    expect(t.out()).toMatch(/^\t\* IPv6: (no, but OS has support|no, unavailable in OS|yes, .*)$/m);
    expect(t.out()).toContain('\t* MappingVariesByDestIP: false\n');
    expect(t.out()).toContain('\t* PortMapping: not checked\n');
    expect(t.out()).toMatch(/^\t\* Nearest DERP: Lab [12]$/m);
    expect(t.out()).toMatch(/^\t\t- lab[12]: \d+\.\dms +\(Lab [12]\)$/m);
    expect(t.err()).toBe('');
  });

  it('json-line prints one parseable object per report, with a stability warning on stderr', async () => {
    const file = await mapFile();
    const t = io();
    expect(await run(['--derp-map', file, '--format', 'json-line'], t.io)).toBe(0);
    expect(t.err()).toMatch(/not yet considered a stable interface/);
    const lines = t.out().trim().split('\n');
    expect(lines).toHaveLength(1);
    const j = JSON.parse(lines[0]!);
    expect(j).toMatchObject({ udp: true, mappingVariesByDestIP: false, upnp: null });
    expect(Object.keys(j.regionLatency).sort()).toEqual(['901', '902']);
  });

  it('--every repeats until its signal fires', async () => {
    const file = await mapFile();
    const t = io();
    const ac = new AbortController();
    let reports = 0;
    const write = t.io.stdout.write;
    t.io.stdout.write = (s: string) => {
      if (++reports === 2) ac.abort();
      return write(s);
    };
    expect(
      await run(['--derp-map', file, '--format', 'json-line', '--every', '10ms'], { ...t.io, signal: ac.signal }),
    ).toBe(0);
    const objs = t
      .out()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(objs).toHaveLength(2);
    expect(objs.map((o) => o.full)).toEqual([true, false]);
  });
});

describe('netcheck CLI helpers', () => {
  it('parseDuration takes Go-style durations and plain seconds', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('2')).toBe(2000);
    expect(parseDuration('')).toBeUndefined();
    expect(parseDuration('5 s')).toBeUndefined();
    expect(parseDuration('1d')).toBeUndefined();
  });

  it('formatLatency rounds to 0.1 ms like Go', () => {
    expect(formatLatency(0.04)).toBe('0.0ms');
    expect(formatLatency(12.345)).toBe('12.3ms');
    expect(formatLatency(1234)).toBe('1.2s');
  });

  it('loadDerpMap accepts inline JSON', async () => {
    const m = await loadDerpMap(' {"regions":[{"regionId":5,"nodes":[{"hostName":"d.example"}]}]}');
    expect([...m.regions.keys()]).toEqual([5]);
  });

  it('formatReport: unknown nearest, unmeasured regions last, IPv6 wording', () => {
    const map = parseDerpMap({
      regions: [
        { regionId: 1, regionCode: 'a', nodes: [{ hostName: 'a.example' }] },
        { regionId: 2, regionCode: 'bb', regionName: 'B', nodes: [{ hostName: 'b.example' }] },
      ],
    });
    const empty = new ReportBuilder(true, false, 3).finish(new Date(0), 0, 0, 'none');
    const txt = formatReport(empty, map);
    expect(txt).toContain('\t* UDP: false\n');
    expect(txt).toContain('\t* IPv4: (no addr found)\n');
    expect(txt).toContain('\t* IPv6: no, unavailable in OS\n');
    expect(txt).toContain('\t* MappingVariesByDestIP: \n');
    expect(txt).toContain('\t* Nearest DERP: unknown (no response to latency probes)\n');
    const b = new ReportBuilder(true, true, 3);
    b.addStun({
      regionId: 2,
      server: { ip: '192.0.2.1', port: 1 },
      family: 4,
      mapped: { ip: '198.51.100.1', port: 2 },
      rttMs: 12.34,
    });
    const txt2 = formatReport(b.finish(new Date(0), 0, 2, 'best'), map);
    expect(txt2).toContain('\t* IPv6: no, but OS has support\n');
    expect(txt2).toContain('\t* Nearest DERP: B\n');
    // Codes right-aligned to at least 3 columns (Go's %3s), latency left-aligned in 7.
    expect(txt2).toContain('\t\t-  bb: 12.3ms  (B)\n\t\t-   a:         (a)\n');
  });
});
