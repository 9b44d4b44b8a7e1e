/**
 * Faults, observed from outside: a NAT reboot forgets the mapping (a full-cone mapping that let a stranger in no
 * longer does), short UDP timeouts expire it, link down cuts a site or host off and link up restores it (routes
 * included), roaming changes a host's address with routes fixed, a restarted process gets a new pid, and blocking UDP
 * between two sites drops what one sends the other while STUN (in the internet namespace) still answers both.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { blockUdp, natReboot, restartProcess, roam, setLink, setUdpTimeouts } from '../../nat-lab/faults.js';
import { getNodeTools } from '../../nat-lab/build-tools.js';
import { leftovers } from '../../nat-lab/cleanup.js';
import { sleep } from '../../nat-lab/exec.js';

labSuite('nat-lab faults', () => {
  let lab: Lab;

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', profile: 'full-cone' },
        { name: 'b', profile: 'easy' },
      ],
    });
  });

  afterAll(async () => {
    await lab?.close();
    expect(leftovers(lab.prefix)).toEqual([]);
  });

  /** Listens on a1:port after creating a mapping; returns a function that sends from the outsider and says if it arrived. */
  async function mappedListener(port: number) {
    const p = await lab.spawnProbe('a1', [
      'stun',
      '--bind',
      `0.0.0.0:${port}`,
      '--server',
      '203.0.113.1:3478',
      '--listen-ms',
      '60000',
    ]);
    await p.waitForLine(/"event":"listening"/);
    const mapped = p.json().find((e) => e.event === 'mapped')!.mapped as string;
    let n = 0;
    const reaches = async (): Promise<boolean> => {
      const label = `knock-${++n}`;
      await lab.probe('inet', ['send', '--to', mapped, '--from', `203.0.113.3:${port + n}=${label}`, '--count', '2']);
      await sleep(300);
      return p.json().some((e) => e.event === 'recv' && e.data === label);
    };
    return { p, mapped, reaches };
  }

  const stunWorks = async (host: string): Promise<boolean> => {
    const ev = await lab.probe(host, ['stun', '--server', '203.0.113.1:3478', '--timeout-ms', '200', '--tries', '2']);
    return ev.some((e) => e.event === 'mapped');
  };

  it('nat-reboot forgets mappings', async () => {
    const l = await mappedListener(42000);
    expect(await l.reaches()).toBe(true); // full cone: a stranger gets in
    const before = await lab.exec('a-rtr', ['conntrack', '-L'], { check: false });
    expect(before.stdout).toMatch(/dport=3478/);
    await natReboot(lab, 'a');
    const after = await lab.exec('a-rtr', ['conntrack', '-L'], { check: false });
    expect(after.stdout).not.toMatch(/dport=3478/);
    expect(await l.reaches()).toBe(false); // the mapping is gone
    await l.p.kill();
  });

  it('short UDP timeouts expire mappings', async () => {
    await setUdpTimeouts(lab, 'a', { udp: 1, stream: 1 });
    const t = await lab.exec('a-rtr', ['sysctl', '-n', 'net.netfilter.nf_conntrack_udp_timeout_stream']);
    expect(t.stdout.trim()).toBe('1');
    const l = await mappedListener(42100);
    expect(await l.reaches()).toBe(true);
    await sleep(2500); // idle longer than the timeouts
    expect(await l.reaches()).toBe(false);
    await l.p.kill();
    await setUdpTimeouts(lab, 'a', { udp: 30, stream: 120 });
  });

  it('link down cuts a site off; link up restores it', async () => {
    expect(await stunWorks('b1')).toBe(true);
    await setLink(lab, 'b', false);
    expect(await stunWorks('b1')).toBe(false);
    await setLink(lab, 'b', true);
    expect(await stunWorks('b1')).toBe(true);
  });

  it('link down on a host; link up restores its default route', async () => {
    await setLink(lab, 'b1', false);
    expect(await stunWorks('b1')).toBe(false);
    await setLink(lab, 'b1', true);
    const routes = await lab.exec('b1', ['ip', 'route']);
    expect(routes.stdout).toMatch(/^default via 192\.168\.2\.1/m);
    expect(await stunWorks('b1')).toBe(true);
  });

  it('roam gives a host a new LAN address and keeps it online', async () => {
    const { from, to } = await roam(lab, 'b1');
    expect(from).toBe('192.168.2.10');
    expect(to).not.toBe(from);
    expect(lab.host('b1').ip).toBe(to);
    const addr = await lab.exec('b1', ['ip', '-br', 'addr']);
    expect(addr.stdout).toContain(`${to}/24`);
    expect(addr.stdout).not.toContain(`${from}/`);
    expect(await stunWorks('b1')).toBe(true);
  });

  it('blockUdp drops UDP forwarded between two sites but not to the internet namespace; unblocking restores it', async () => {
    const l = await mappedListener(42200); // a1 behind full cone: b1 gets in once the mapping exists
    let n = 0;
    const fromB = async (): Promise<boolean> => {
      const label = `b-${++n}`;
      await lab.probe('b1', ['send', '--to', l.mapped, '--from', `0.0.0.0:${43000 + n}=${label}`, '--count', '2']);
      await sleep(300);
      return l.p.json().some((e) => e.event === 'recv' && e.data === label);
    };
    expect(await fromB()).toBe(true);
    await blockUdp(lab, 'a', 'b', true);
    expect(lab.state.blockedUdp).toEqual(['a b']);
    expect(await fromB()).toBe(false);
    expect(await stunWorks('b1')).toBe(true);
    expect(await stunWorks('a1')).toBe(true);
    const rules = await lab.exec('inet', ['nft', 'list', 'table', 'ip', 'natlab_block']);
    expect(rules.stdout.match(/meta l4proto udp counter packets [1-9]\d* bytes \d+ drop/g)?.length).toBeGreaterThan(0);
    await blockUdp(lab, 'a', 'b', false);
    expect(lab.state.blockedUdp).toEqual([]);
    expect(await fromB()).toBe(true);
    await l.p.kill();
  });

  it('restartProcess restarts a DERP-slot process with a new pid', async () => {
    const tools = await getNodeTools();
    const derp = lab.startDerp([...tools.standInRelay, '--listen', '203.0.113.10:80']);
    await derp.waitForLine(/"event":"ready"/);
    const pid = derp.pid;
    const again = await restartProcess(lab, 'derp');
    expect(again.pid).not.toBe(pid);
    await again.waitForLine(/"event":"ready"/);
    expect(lab.state.processes.find((r) => r.name === 'derp')?.pid).toBe(again.pid);
  });
});
