/**
 * The port mapper against a real router: a nat-lab `portmap` site (nftables NAT + miniupnpd 2.3.1 offering NAT-PMP,
 * PCP and UPnP-IGD). For each protocol, a small program in the host namespace (fixtures/portmap-client.ts) maps its
 * UDP port with PortMapper through the lab router; then a host on the internet that never talked to it (the
 * "outsider", 203.0.113.3) sends to the mapped public address and the datagram must arrive; after close() the
 * router's forwarding rule must be gone and a new datagram must not arrive.
 *
 * Network safety: the mapper runs only inside the lab's host namespace and is always given the lab router's
 * address as its gateway; nothing here runs the mapper in the root namespace.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { leftovers } from '../../nat-lab/cleanup.js';
import { sleep } from '../../nat-lab/exec.js';
import { PLAN } from '../../nat-lab/plan.js';
import type { LabProcess } from '../../nat-lab/process.js';

const FIXTURE = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'portmap-client.ts');

labSuite('port mapper against miniupnpd (nat-lab portmap profile)', () => {
  let lab: Lab;
  const figures: string[] = [];

  beforeAll(async () => {
    lab = await createLab({ sites: [{ name: 'a', profile: 'portmap' }] });
  });

  afterAll(async () => {
    if (figures.length) console.log(`time to mapping (nat-lab portmap, miniupnpd 2.3.1):\n${figures.join('\n')}`);
    await lab?.close();
    expect(leftovers(lab.prefix)).toEqual([]);
  });

  function client(port: number, protocols: string): LabProcess {
    const h = lab.host('a1');
    return lab.spawn(
      'a1',
      [
        process.execPath,
        '--import',
        'tsx',
        FIXTURE,
        '--gateway',
        h.gateway,
        '--port',
        String(port),
        '--protocol',
        protocols,
      ],
      { name: `portmap-${protocols}-${port}` },
    );
  }

  async function mapped(p: LabProcess): Promise<Record<string, unknown>> {
    const line = await p.waitForLine(/"event":"(mapped|error)"/, 30_000);
    const ev = JSON.parse(line) as Record<string, unknown>;
    expect(ev.event, `${line}\n${p.tail()}`).toBe('mapped');
    return ev;
  }

  /** The router's miniupnpd rules that forward to a1:port (nft ruleset lines). */
  async function forwardRules(port: number): Promise<string[]> {
    const r = await lab.exec(lab.site('a').router, ['nft', 'list', 'ruleset']);
    return r.stdout.split('\n').filter((l) => l.includes(`dnat ip to ${lab.host('a1').ip}:${port}`));
  }

  /** Sends `label` from the outsider (never contacted by a1) at `srcPort` to `to`; true if a1's program got it. */
  async function knock(p: LabProcess, to: string, label: string, srcPort: number): Promise<boolean> {
    const sent = await lab.probe('inet', [
      'send',
      '--to',
      to,
      '--from',
      `${PLAN.outsider}:${srcPort}=${label}`,
      '--count',
      '3',
      '--interval-ms',
      '20',
    ]);
    expect(sent.some((e) => e.event === 'sent')).toBe(true);
    const arrived = (): boolean => p.json().some((e) => e.event === 'recv' && e.data === label);
    for (let i = 0; i < 20 && !arrived(); i++) await sleep(50);
    return arrived();
  }

  it.each([
    ['pmp', 41001],
    ['pcp', 41002],
    ['upnp', 41003],
  ] as const)('%s: maps the port, a stranger gets through, close() removes the mapping', async (protocol, port) => {
    const p = client(port, protocol);
    try {
      const ev = await mapped(p);
      expect(ev.protocol).toBe(protocol);
      const external = String(ev.external);
      const [ip, extPort] = external.split(':');
      expect(ip).toBe(lab.site('a').publicIp);
      if (protocol !== 'upnp') expect(Number(extPort)).toBe(port); // NAT-PMP/PCP ask for the internal port first
      figures.push(`  ${protocol}: ${String(ev.timeToMappingMs)} ms (${external})`);

      const rules = await forwardRules(port);
      expect(
        rules.some((l) => l.includes(`dport ${extPort} `)),
        rules.join('\n'),
      ).toBe(true);
      expect(await knock(p, external, `before-${protocol}`, port + 100)).toBe(true);

      process.kill(p.pid, 'SIGUSR2');
      const released = JSON.parse(await p.waitForLine(/"event":"released"/, 10_000)) as {
        counters: Record<string, number>;
      };
      expect(released.counters.released).toBe(1); // the router confirmed the deletion
      expect(await forwardRules(port)).toEqual([]);
      // A new source port: the first knock's conntrack entry must not carry this one.
      expect(await knock(p, external, `after-${protocol}`, port + 200)).toBe(false);
    } finally {
      await p.kill();
    }
  });

  it('with every protocol allowed it takes NAT-PMP, the first choice', async () => {
    const p = client(41004, 'pmp,pcp,upnp');
    try {
      const ev = await mapped(p);
      expect(ev.protocol).toBe('pmp');
      figures.push(`  all enabled → ${String(ev.protocol)}: ${String(ev.timeToMappingMs)} ms`);
    } finally {
      await p.kill();
    }
  });
});
