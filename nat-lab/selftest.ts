/**
 * Profile self-tests: measure each site's NAT from outside, with the probe tool, and compare with what its profile
 * promises (`expectedBehaviour`). Nothing here reads the rules back: a site passes only if packets behave.
 *
 *  mapping    one socket on the host sends Binding requests to 203.0.113.1:3478, .2:3478, .1:3479, .2:3479;
 *             all mapped endpoints equal → EIM (or `none` when it is the host's own address), equal per server
 *             address → ADM, else APDM; `portPreserved` compares the mapped port with the local one.
 *  filtering  a second socket creates a mapping M towards 203.0.113.1:3478, then listens. From the internet,
 *             203.0.113.1:<new port> ("same-addr") and 203.0.113.3 ("new-addr", never contacted) send to M:
 *             new-addr arrives → EIF, only same-addr → ADF, neither → APDF.
 *  hairpin    in the same window a LAN host (the second host, else the same host from another port) sends to M.
 *  lan        with two hosts, the second sends to the first's LAN address.
 *  tcp        TCP connects to 203.0.113.4:443 and :8080 (udp-blocked lets only 80/443 out).
 *  portmap    natpmpc (NAT-PMP), the probe's PCP MAP and upnpc (UPnP-IGD) each ask for a mapping, and an
 *             unsolicited datagram from 203.0.113.3 to the NAT-PMP-mapped port must arrive.
 */
import { PLAN } from './plan.js';
import { Lab, type SiteInfo } from './topology.js';
import { expectedBehaviour, parseProfile, type Behaviour, type Mapping } from './profiles.js';
import { getNodeTools } from './build-tools.js';
import { parseLink, type LinkSpec } from './link.js';
import { sleep } from './exec.js';

/** What the probes saw, in the shape of `Behaviour`, plus the public address. */
export interface Measured extends Behaviour {
  mappedIp: string | null;
  /** Raw observations, for reports. */
  notes: string[];
}

export interface Check {
  name: keyof Behaviour;
  expected: unknown;
  measured: unknown;
  ok: boolean;
}

export interface SelfTestResult {
  site: string;
  profile: string;
  expected: Behaviour;
  measured: Measured;
  checks: Check[];
  ok: boolean;
  ms: number;
}

type Ev = Record<string, unknown>;

/** Measures site `siteName` of a running lab. Uses UDP ports 41000 + 20·index … +19 on its hosts. */
export async function measureSite(lab: Lab, siteName: string): Promise<Measured> {
  const site = lab.site(siteName);
  const h1 = lab.host(site.hosts[0]!);
  const h2 = site.hosts[1] === undefined ? undefined : lab.host(site.hosts[1]);
  const base = 41000 + 20 * site.index;
  const rtt = site.link ? site.link.rttMs + site.link.jitterMs : 0;
  const stunTimeout = Math.max(250, 2 * rtt + 100);
  const st = lab.state.stun;
  const notes: string[] = [];

  // mapping
  const servers = [
    `${st.primary}:${st.port}`,
    `${st.secondary}:${st.port}`,
    `${st.primary}:${st.altPort}`,
    `${st.secondary}:${st.altPort}`,
  ];
  const mapEv = await lab.probe(h1.name, [
    'stun',
    '--bind',
    `0.0.0.0:${base}`,
    ...servers.flatMap((x) => ['--server', x]),
    '--timeout-ms',
    String(stunTimeout),
    '--tries',
    '2',
  ]);
  const mapped = servers.map(
    (srv) => mapEv.find((e) => e.event === 'mapped' && e.server === srv)?.mapped as string | undefined,
  );
  notes.push(`mapped from :${base} → ${servers.map((srv, i) => `${srv}: ${mapped[i] ?? 'timeout'}`).join(', ')}`);
  const got = mapped.filter((m): m is string => m !== undefined);
  const udp = got.length > 0;
  let mapping: Mapping | null = null;
  let portPreserved: boolean | null = null;
  let mappedIp: string | null = null;
  if (udp) {
    const first = got[0]!;
    mappedIp = first.split(':')[0]!;
    portPreserved = Number(first.split(':')[1]) === base;
    if (got.every((m) => m === first)) mapping = mappedIp === h1.ip ? 'none' : 'EIM';
    else if (mapped[0] === mapped[2] && mapped[1] === mapped[3]) mapping = 'ADM';
    else mapping = 'APDM';
  }

  // filtering, hairpin, lan
  let filtering: Behaviour['filtering'] = null;
  let hairpin: boolean | null = null;
  let lan: boolean | null = null;
  const settleMs = 300 + 2 * rtt;
  const listener = await lab.spawnProbe(
    h1.name,
    [
      'stun',
      '--bind',
      `0.0.0.0:${base + 1}`,
      '--server',
      servers[0]!,
      '--timeout-ms',
      String(stunTimeout),
      '--tries',
      '2',
      '--listen-ms',
      '60000',
    ],
    `selftest-listen-${site.name}`,
  );
  await listener.waitForLine(/"event":"listening"/, 10_000 + 4 * stunTimeout);
  const m = listener.json().find((e) => e.event === 'mapped')?.mapped as string | undefined;
  const sends: Array<Promise<Ev[]>> = [];
  if (m) {
    sends.push(
      lab.probe('inet', [
        'send',
        '--to',
        m,
        '--from',
        `${st.primary}:${base + 5}=same-addr`,
        '--from',
        `${PLAN.outsider}:${base + 5}=new-addr`,
      ]),
    );
    sends.push(lab.probe((h2 ?? h1).name, ['send', '--to', m, '--from', `0.0.0.0:${base + 2}=hairpin`]));
  }
  if (h2) sends.push(lab.probe(h2.name, ['send', '--to', `${h1.ip}:${base + 1}`, '--from', `0.0.0.0:${base + 3}=lan`]));
  await Promise.all(sends);
  await sleep(settleMs); // every sender has exited: give the last datagram time to cross the links
  await listener.kill();
  const arrived = new Set(
    listener
      .json()
      .filter((e) => e.event === 'recv')
      .map((e) => String(e.data)),
  );
  notes.push(`listener mapped ${m ?? '(none)'}; arrived: ${[...arrived].join(', ') || 'nothing'}`);
  if (m) {
    filtering = arrived.has('new-addr') ? 'EIF' : arrived.has('same-addr') ? 'ADF' : 'APDF';
    hairpin = arrived.has('hairpin');
  }
  if (h2) lan = arrived.has('lan');

  // tcp
  const tcpEv = await lab.probe(h1.name, [
    'tcp-connect',
    '--to',
    `${PLAN.tcpProbe}:443`,
    '--to',
    `${PLAN.tcpProbe}:8080`,
    '--timeout-ms',
    String(700 + 2 * rtt),
  ]);
  const tcpOk = (port: number): boolean =>
    tcpEv.some((e) => e.event === 'tcp' && e.to === `${PLAN.tcpProbe}:${port}` && e.ok === true);

  // port mapping protocols
  let portmap = false;
  if (site.spec.name === 'portmap') portmap = await measurePortmap(lab, site, base, settleMs, notes);

  return {
    udp,
    mapping,
    filtering,
    hairpin,
    portPreserved,
    tcp443: tcpOk(443),
    tcpOther: tcpOk(8080),
    portmap,
    lan,
    mappedIp,
    notes,
  };
}

async function measurePortmap(
  lab: Lab,
  site: SiteInfo,
  base: number,
  settleMs: number,
  notes: string[],
): Promise<boolean> {
  const h1 = lab.host(site.hosts[0]!);
  const gw = h1.gateway;
  // NAT-PMP with Debian's natpmpc
  const np = await lab.exec(h1.name, ['natpmpc', '-g', gw, '-a', String(base + 10), String(base + 10), 'udp', '60'], {
    check: false,
    timeoutMs: 15_000,
  });
  const npm = /Mapped public port (\d+) protocol UDP to local port (\d+)/.exec(np.stdout);
  notes.push(
    `natpmpc: ${npm ? `mapped public port ${npm[1]}` : `failed (${np.stdout.trim().split('\n').pop() ?? ''})`}`,
  );
  // PCP MAP with the probe
  const pcp = await lab.probe(h1.name, [
    'pcp-map',
    '--gateway',
    gw,
    '--internal-port',
    String(base + 11),
    '--lifetime',
    '60',
  ]);
  const pcpEv = pcp.find((e) => e.event === 'pcp');
  const pcpOk =
    pcpEv !== undefined && pcpEv.result === 0 && typeof pcpEv.externalPort === 'number' && pcpEv.externalPort > 0;
  notes.push(
    `pcp: ${pcpEv ? `result ${String(pcpEv.result)}, external ${String(pcpEv.externalIp)}:${String(pcpEv.externalPort)}` : 'no answer'}`,
  );
  // UPnP-IGD with upnpc (-i: the WAN address is in a reserved range, which upnpc would call "not connected")
  const up = await lab.exec(h1.name, ['upnpc', '-i', '-a', h1.ip, String(base + 12), String(base + 12), 'UDP'], {
    check: false,
    timeoutMs: 20_000,
  });
  const upOk = /is redirected to internal/.test(up.stdout);
  notes.push(`upnpc: ${upOk ? 'mapping added' : `failed (${up.stdout.trim().split('\n').pop() ?? ''})`}`);
  // the NAT-PMP mapping must accept an unsolicited sender
  let eif = false;
  if (npm) {
    const recv = await lab.spawnProbe(
      h1.name,
      ['recv', '--bind', `0.0.0.0:${base + 10}`, '--ms', '60000'],
      `selftest-portmap-${site.name}`,
    );
    await recv.waitForLine(/"event":"listening"/, 10_000);
    await lab.probe('inet', [
      'send',
      '--to',
      `${site.publicIp}:${npm[1]}`,
      '--from',
      `${PLAN.outsider}:${base + 6}=portmap`,
    ]);
    await sleep(settleMs);
    await recv.kill();
    eif = recv.json().some((e) => e.event === 'recv' && e.data === 'portmap');
    notes.push(`unsolicited to mapped port ${npm[1]}: ${eif ? 'arrived' : 'dropped'}`);
  }
  return npm !== null && pcpOk && upOk && eif;
}

/** Compares a measurement with a profile's promise. */
export function compareBehaviour(expected: Behaviour, measured: Behaviour): Check[] {
  const keys: Array<keyof Behaviour> = [
    'udp',
    'mapping',
    'filtering',
    'hairpin',
    'portPreserved',
    'tcp443',
    'tcpOther',
    'portmap',
    'lan',
  ];
  return keys.map((k) => ({ name: k, expected: expected[k], measured: measured[k], ok: expected[k] === measured[k] }));
}

/** Self-tests the profile of every site of a running lab (at most `concurrency` sites at a time). */
export async function selfTestLab(
  lab: Lab,
  opts: { sites?: string[]; concurrency?: number } = {},
): Promise<SelfTestResult[]> {
  const tools = await getNodeTools();
  const tcp =
    lab.process('tcp-probe') ??
    lab.spawn(
      'inet',
      [...tools.probe, 'tcp-listen', '--bind', `${PLAN.tcpProbe}:443`, '--bind', `${PLAN.tcpProbe}:8080`],
      { name: 'tcp-probe' },
    );
  await tcp.waitForLine(/"event":"listening"/, 10_000);
  const names = opts.sites ?? lab.sites.map((s) => s.name);
  const results: SelfTestResult[] = [];
  const queue = [...names];
  const worker = async (): Promise<void> => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const t0 = Date.now();
      const site = lab.site(name);
      const expected = expectedBehaviour(site.spec);
      const measured = await measureSite(lab, name);
      const checks = compareBehaviour(expected, measured);
      results.push({
        site: name,
        profile: site.profile,
        expected,
        measured,
        checks,
        ok: checks.every((c) => c.ok),
        ms: Date.now() - t0,
      });
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));
  return names.map((n) => results.find((r) => r.site === n)!);
}

const SITE_NAMES = 'abcdefghijklmno';

/**
 * Builds one lab with a site per profile (sites a, b, c, … in order), self-tests every site and tears the lab
 * down. `same-lan` sites get their two hosts.
 */
export async function selfTest(
  profiles: readonly string[],
  opts: { link?: string | LinkSpec; concurrency?: number; prefix?: string } = {},
): Promise<SelfTestResult[]> {
  if (profiles.length > SITE_NAMES.length)
    throw new RangeError(`at most ${SITE_NAMES.length} profiles per self-test run`);
  const specs = profiles.map((p) => parseProfile(p));
  const link = opts.link === undefined ? undefined : parseLink(opts.link);
  const lab = await Lab.create({
    sites: specs.map((spec, i) => ({ name: SITE_NAMES[i]!, profile: spec })),
    ...(link ? { link } : {}),
    ...(opts.prefix ? { prefix: opts.prefix } : {}),
  });
  try {
    return await selfTestLab(lab, { ...(opts.concurrency ? { concurrency: opts.concurrency } : {}) });
  } finally {
    await lab.close();
  }
}

/** One line per check that failed, for error messages and the CLI. */
export function describeFailures(r: SelfTestResult): string[] {
  return r.checks
    .filter((c) => !c.ok)
    .map(
      (c) => `${r.profile} (site ${r.site}): ${c.name} expected ${String(c.expected)}, measured ${String(c.measured)}`,
    );
}
