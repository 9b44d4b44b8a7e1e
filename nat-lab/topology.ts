/**
 * The topology builder.
 *
 *                          "internet" namespace (<prefix>-inet)
 *        STUN 203.0.113.1 / .2 :3478,3479 (coturn) · DERP slot 203.0.113.10:80 · outsider 203.0.113.3
 *               | 198.18.1.0/24                         | 198.18.2.0/24
 *        [wire: delay line]  (only with a link preset, when the kernel has no netem)
 *               |                                       |
 *        a-rtr (NAT, nft table ip natlab)        b-cgn (carrier NAT) ── 100.64.2.0/24 ── b-rtr (home NAT)
 *               | bridge 192.168.1.0/24                                                   | 192.168.2.0/24
 *          a1   a2 …                                                                      b1
 *
 * Every veth is created directly inside its namespaces (`ip -n A link add … peer name … netns B`), so the root
 * namespace never holds a lab interface, address, route or rule. Names: namespaces `<prefix>-<node>`, interfaces
 * `<prefix>-<role>`. Teardown (cleanup.ts) removes all of it by prefix, also after a crash.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { PLAN, ifName, isPrefix } from './plan.js';
import { inNs, run, sleep, type ExecResult, type RunOptions } from './exec.js';
import { LabProcess, type SpawnOptions } from './process.js';
import { registerLive, teardownSync, unregisterLive } from './cleanup.js';
import { PROFILES, formatProfile, miniupnpdConfig, miniupnpdTables, natRuleset, parseProfile } from './profiles.js';
import { delayLineArgs, isNoop, lossRuleset, netemArgs, type LinkSpec } from './link.js';
import { getDelayLine, getNodeTools } from './build-tools.js';
import { loadState, saveState, type HostInfo, type LabState, type RouterInfo, type SiteInfo } from './state.js';
import { planLab, uniquePrefix, type LabSpec } from './layout.js';

export type { LabSpec, SiteSpec } from './layout.js';
export type { HostInfo, LabState, NodeInfo, RouterInfo, SiteInfo } from './state.js';

/** Default conntrack UDP timeouts (kernel defaults), seconds. */
export const DEFAULT_UDP_TIMEOUTS = { udp: 30, stream: 120 } as const;

const SYSCTL_ALL = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
const SYSCTL_FORWARD = [
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.send_redirects=0',
  'net.ipv4.conf.default.send_redirects=0',
  'net.bridge.bridge-nf-call-iptables=0',
];

export class Lab {
  readonly state: LabState;
  private readonly procs = new Map<string, LabProcess>();
  private closed = false;

  private constructor(state: LabState) {
    this.state = state;
  }

  get prefix(): string {
    return this.state.prefix;
  }

  /** Builds a lab; on any failure everything created so far is removed before the error is rethrown. */
  static async create(spec: LabSpec): Promise<Lab> {
    const prefix = spec.prefix ?? uniquePrefix();
    if (!isPrefix(prefix)) throw new MeshsockError(ErrorCode.BAD_CONFIG, `bad prefix ${JSON.stringify(prefix)}`);
    const lab = new Lab(planLab(prefix, spec));
    registerLive(prefix);
    try {
      mkdirSync(lab.state.runDir, { recursive: true });
      saveState(lab.state);
      await lab.build(spec);
      lab.save();
    } catch (e) {
      teardownSync(prefix);
      unregisterLive(prefix);
      throw e;
    }
    if (spec.persist) unregisterLive(prefix);
    return lab;
  }

  /** A handle on a lab built earlier (by `nat-lab up` or another process), from its state file. */
  static attach(prefix: string): Lab {
    const lab = new Lab(loadState(prefix));
    for (const rec of lab.state.processes) lab.procs.set(rec.name, LabProcess.adopt(prefix, rec));
    return lab;
  }

  // ---- lookup -------------------------------------------------------------------------------------------------

  get hosts(): HostInfo[] {
    return Object.values(this.state.hosts);
  }

  get sites(): SiteInfo[] {
    return Object.values(this.state.sites).sort((a, b) => a.index - b.index);
  }

  host(name: string): HostInfo {
    const h = this.state.hosts[name];
    if (!h)
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `unknown host ${JSON.stringify(name)}; hosts: ${Object.keys(this.state.hosts).join(', ')}`,
      );
    return h;
  }

  site(name: string): SiteInfo {
    const s = this.state.sites[name];
    if (!s)
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `unknown site ${JSON.stringify(name)}; sites: ${Object.keys(this.state.sites).join(', ')}`,
      );
    return s;
  }

  router(name: string): RouterInfo {
    const r = this.state.routers[name];
    if (!r) throw new MeshsockError(ErrorCode.BAD_CONFIG, `unknown router ${JSON.stringify(name)}`);
    return r;
  }

  /** The namespace of a node (`inet`, `a1`, `a-rtr`, `b-cgn`, `a-wire`). */
  ns(node: string): string {
    const n = this.state.nodes[node];
    if (!n)
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `unknown node ${JSON.stringify(node)}; nodes: ${Object.keys(this.state.nodes).join(', ')}`,
      );
    return n.ns;
  }

  // ---- running things -----------------------------------------------------------------------------------------

  /** Runs `argv` inside `node` and waits for it (rejects with COMMAND on a non-zero exit unless `check: false`). */
  exec(node: string, argv: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
    return run(inNs(this.ns(node), argv), { ...opts, env: { ...opts.env, NAT_LAB_PREFIX: this.prefix } });
  }

  /** Starts `argv` inside `node`; the handle gives output lines, `waitForLine`, `kill()` and `restart()`. */
  spawn(node: string, argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    let name = opts.name ?? (argv[0] ?? 'process').split('/').pop()!;
    if (this.procs.has(name)) {
      let i = 2;
      while (this.procs.has(`${name}-${i}`)) i++;
      name = `${name}-${i}`;
    }
    const p = LabProcess.start(this.prefix, node, this.ns(node), argv, {
      ...opts,
      name,
      ...(opts.daemon && !opts.logFile ? { logFile: join(this.state.runDir, `${name}.log`) } : {}),
    });
    this.procs.set(name, p);
    if (p.daemon) {
      this.state.processes = [...this.state.processes.filter((r) => r.name !== name), p.record()];
      this.save();
    }
    return p;
  }

  /** A process started by `spawn` (or recorded in the state file), by name. */
  process(name: string): LabProcess | undefined {
    return this.procs.get(name);
  }

  /** Records a daemon's new pid after a restart. */
  noteRestart(p: LabProcess): void {
    if (!p.daemon) return;
    this.state.processes = [...this.state.processes.filter((r) => r.name !== p.name), p.record()];
    this.save();
  }

  /** Runs the probe tool in `node` and returns its JSON events. */
  async probe(node: string, args: readonly string[], opts: RunOptions = {}): Promise<Array<Record<string, unknown>>> {
    const tools = await getNodeTools();
    const r = await this.exec(node, [...tools.probe, ...args], { check: false, ...opts });
    const events = parseJsonLines(r.stdout);
    const err = events.find((e) => e.event === 'error');
    if (r.code !== 0 || err)
      throw new MeshsockError(
        ErrorCode.COMMAND,
        `probe ${args[0] ?? ''} in ${node} failed: ${String(err?.message ?? r.stderr.trim())}`,
      );
    return events;
  }

  /** Starts the probe tool in `node` without waiting. */
  async spawnProbe(node: string, args: readonly string[], name?: string): Promise<LabProcess> {
    const tools = await getNodeTools();
    return this.spawn(node, [...tools.probe, ...args], { name: name ?? `probe-${node}` });
  }

  /**
   * Starts a DERP server (or any relay) in the internet namespace as daemon `derp`, at the DERP slot
   * (`state.derp`: 203.0.113.10:80). Restart it with `faults.restartProcess(lab, 'derp')`.
   */
  startDerp(argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    return this.spawn('inet', argv, { name: 'derp', daemon: true, ...opts });
  }

  /** Writes the state file. */
  save(): void {
    if (!this.closed) saveState(this.state);
  }

  /** Tears everything down (processes, namespaces, state). Safe to call twice. */
  async close(): Promise<void> {
    this.closed = true;
    teardownSync(this.prefix);
    unregisterLive(this.prefix);
  }

  // ---- building -----------------------------------------------------------------------------------------------

  private async build(spec: LabSpec): Promise<void> {
    const s = this.state;
    const P = s.prefix;
    const nodes = Object.values(s.nodes);
    // 1. namespaces and sysctls
    await run(['ip', '-batch', '-'], { input: nodes.map((n) => `netns add ${n.ns}\n`).join('') });
    await Promise.all(
      nodes.map((n) => {
        const forward = n.role === 'inet' || n.role === 'router' || n.role === 'carrier';
        return run(inNs(n.ns, ['sysctl', '-e', '-q', '-w', ...SYSCTL_ALL, ...(forward ? SYSCTL_FORWARD : [])]));
      }),
    );
    // 2. links (created from one side, peer moved into the other namespace at creation) and configuration
    const create = new Map<string, string[]>();
    const config = new Map<string, string[]>();
    const add = (m: Map<string, string[]>, node: string, cmd: string): void => {
      m.set(node, [...(m.get(node) ?? []), cmd]);
    };
    const veth = (a: string, aIf: string, b: string, bIf: string): void =>
      add(create, a, `link add name ${aIf} type veth peer name ${bIf} netns ${this.ns(b)}`);
    const up = (node: string, dev: string, cidr?: string): void => {
      if (cidr) add(config, node, `addr add ${cidr} dev ${dev}`);
      add(config, node, `link set dev ${dev} up`);
    };
    for (const n of nodes) add(config, n.name, 'link set dev lo up');
    const inetIps = [PLAN.stunPrimary, PLAN.stunSecondary, PLAN.outsider, PLAN.tcpProbe, PLAN.derp];
    for (const ip of inetIps) add(config, 'inet', `addr add ${ip}/32 dev lo`);

    for (const site of this.sites) {
      const home = this.router(site.router);
      const outer = site.carrier ? this.router(site.carrier) : home;
      // WAN: outer router <-> internet, through a wire namespace when the delay line is needed
      if (site.wire) {
        veth(outer.name, outer.wan, site.wire, ifName(P, 'up'));
        veth('inet', site.inetIface, site.wire, ifName(P, 'dn'));
        up(site.wire, ifName(P, 'up'));
        up(site.wire, ifName(P, 'dn'));
      } else {
        veth(outer.name, outer.wan, 'inet', site.inetIface);
      }
      up('inet', site.inetIface, `${PLAN.wanInet(site.index)}/24`);
      up(outer.name, outer.wan, `${outer.wanIp}/${outer.wanPrefixLen}`);
      add(config, outer.name, `route add default via ${outer.upstream}`);
      if (home.mode === 'none') add(config, 'inet', `route add ${site.lanCidr} via ${outer.wanIp}`);
      if (site.carrier) {
        veth(home.name, home.wan, outer.name, outer.lan);
        up(outer.name, outer.lan, `${outer.lanIp}/24`);
        up(home.name, home.wan, `${home.wanIp}/${home.wanPrefixLen}`);
        add(config, home.name, `route add default via ${home.upstream}`);
      }
      // LAN: a bridge in the home router, one veth per host
      add(create, home.name, `link add name ${home.lan} type bridge`);
      up(home.name, home.lan, `${home.lanIp}/${site.lanCidr.split('/')[1]}`);
      site.hosts.forEach((hn, i) => {
        const h = this.host(hn);
        const port = ifName(P, `h${i + 1}`);
        veth(home.name, port, hn, h.iface);
        add(config, home.name, `link set dev ${port} master ${home.lan}`);
        up(home.name, port);
        up(hn, h.iface, `${h.ip}/${h.prefixLen}`);
        add(config, hn, `route add default via ${h.gateway}`);
      });
    }
    const batch = async (m: Map<string, string[]>): Promise<void> => {
      await Promise.all(
        [...m].map(([node, cmds]) =>
          run(['ip', '-n', this.ns(node), '-batch', '-'], { input: `${cmds.join('\n')}\n` }),
        ),
      );
    };
    await batch(create);
    await batch(config);

    // 3. NAT rules
    await Promise.all(
      Object.values(s.routers)
        .filter((r) => r.mode !== 'none')
        .map((r) => this.applyNatRules(r.name, r.mode === 'portmap')),
    );

    // 4. link impairments
    await this.applyLinks();

    // 5. services
    if (spec.stun !== false) await this.startStun();
    await Promise.all(this.sites.filter((x) => x.spec.name === 'portmap').map((x) => this.startMiniupnpd(x)));
  }

  /**
   * (Re)writes a NAT node's `ip natlab` table from its mode and the current UDP timeouts (learned pmap/seen state
   * starts empty). `withMiniupnpd` also creates the chains miniupnpd expects (once, at build).
   */
  async applyNatRules(routerName: string, withMiniupnpd = false): Promise<void> {
    const r = this.router(routerName);
    if (r.mode === 'none') return;
    const t = this.state.udpTimeouts[r.name] ?? DEFAULT_UDP_TIMEOUTS;
    let script = natRuleset({
      mode: r.mode,
      wan: r.wan,
      lan: r.lan,
      lanCidr: r.lanCidr,
      wanIp: r.wanIp,
      hairpin: r.hairpin,
      stateTimeoutS: Math.max(t.udp, t.stream),
    });
    if (withMiniupnpd) script = miniupnpdTables() + script;
    await this.exec(r.name, ['nft', '-f', '-'], { input: script });
  }

  private async applyLinks(): Promise<void> {
    const work: Array<Promise<unknown>> = [];
    for (const site of this.sites) {
      if (!site.link || isNoop(site.link)) continue;
      const outer = this.router(site.carrier ?? site.router);
      if (this.state.linkMechanism === 'netem') {
        const args = netemArgs(site.link);
        work.push(this.exec(outer.name, ['tc', 'qdisc', 'replace', 'dev', outer.wan, 'root', ...args]));
        work.push(this.exec('inet', ['tc', 'qdisc', 'replace', 'dev', site.inetIface, 'root', ...args]));
        continue;
      }
      if (site.link.lossPct > 0) {
        work.push(this.exec(outer.name, ['nft', '-f', '-'], { input: lossRuleset(outer.wan, site.link.lossPct) }));
        work.push(this.exec('inet', ['nft', '-f', '-'], { input: lossRuleset(site.inetIface, site.link.lossPct) }));
      }
      if (site.wire) {
        const link = site.link;
        const wire = site.wire;
        work.push(
          (async () => {
            const bin = await getDelayLine();
            const p = this.spawn(
              wire,
              [bin, ...delayLineArgs(link, ifName(this.prefix, 'up'), ifName(this.prefix, 'dn'))],
              {
                name: `delay-line-${site.name}`,
                daemon: true,
              },
            );
            await p.waitForLine(/^ready$/, 5000);
          })(),
        );
      }
    }
    await Promise.all(work);
  }

  private async startStun(): Promise<void> {
    const st = this.state.stun;
    const p = this.spawn(
      'inet',
      [
        'turnserver',
        '-n',
        '--stun-only',
        `--listening-ip=${st.primary}`,
        `--listening-ip=${st.secondary}`,
        `--listening-port=${st.port}`,
        `--alt-listening-port=${st.altPort}`,
        '--no-cli',
        '--no-tls',
        '--no-dtls',
        '--log-file=stdout',
        '--simple-log',
        `--pidfile=${join(this.state.runDir, 'turnserver.pid')}`,
      ],
      { name: 'stun', daemon: true },
    );
    const want = [st.primary, st.secondary].flatMap((ip) => [`${ip}:${st.port}`, `${ip}:${st.altPort}`]);
    await this.waitUdpListening('inet', want, 10_000, p);
  }

  private async startMiniupnpd(site: SiteInfo): Promise<void> {
    const r = this.router(site.router);
    const conf = join(this.state.runDir, `miniupnpd-${site.name}.conf`);
    writeFileSync(
      conf,
      miniupnpdConfig({
        wan: r.wan,
        lan: r.lan,
        lanCidr: r.lanCidr,
        uuid: randomUUID(),
        leaseFile: join(this.state.runDir, `miniupnpd-${site.name}.leases`),
      }),
    );
    const p = this.spawn(
      r.name,
      ['miniupnpd', '-f', conf, '-d', '-P', join(this.state.runDir, `miniupnpd-${site.name}.pid`)],
      {
        name: `miniupnpd-${site.name}`,
        daemon: true,
      },
    );
    await p.waitForLine(/Port forwarding is now enabled/, 15_000);
  }

  /** Waits until UDP sockets are bound on every `ip:port` in `node` (reads /proc/net/udp there). */
  async waitUdpListening(node: string, want: string[], timeoutMs: number, proc?: LabProcess): Promise<void> {
    const hexOf = (ep: string): string => {
      const [ip, port] = ep.split(':');
      const o = ip!.split('.').map((x) => Number(x).toString(16).padStart(2, '0').toUpperCase());
      return `${o.reverse().join('')}:${Number(port).toString(16).padStart(4, '0').toUpperCase()}`;
    };
    const need = want.map(hexOf);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.exec(node, ['cat', '/proc/net/udp']);
      const bound = new Set(r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[1] ?? ''));
      if (need.every((n) => bound.has(n))) return;
      if (proc && !proc.running()) throw new MeshsockError(ErrorCode.COMMAND, `${proc.name} exited: ${proc.tail()}`);
      if (Date.now() > deadline)
        throw new MeshsockError(
          ErrorCode.TIMEOUT,
          `nothing bound to ${want.join(', ')} in ${node} after ${timeoutMs} ms`,
        );
      await sleep(30);
    }
  }
}

/** Builds a lab (see `Lab.create`). */
export function createLab(spec: LabSpec): Promise<Lab> {
  return Lab.create(spec);
}

/**
 * A two-peer lab: sites `a` (profile A) and `b` (profile B), peers `a1` and `b1`. A `same-lan` profile puts both
 * peers on one site instead (`a1`, `a2`); then the other profile must be the same or omitted.
 */
export async function createPairLab(
  profileA: string,
  profileB: string | undefined,
  opts: { link?: string | LinkSpec; prefix?: string; persist?: boolean } = {},
): Promise<{ lab: Lab; peers: [string, string] }> {
  const a = parseProfile(profileA);
  const b = profileB === undefined ? undefined : parseProfile(profileB);
  const base = {
    ...(opts.link ? { link: opts.link } : {}),
    ...(opts.prefix ? { prefix: opts.prefix } : {}),
    ...(opts.persist ? { persist: true } : {}),
  };
  const sameLan = a.name === 'same-lan' || b?.name === 'same-lan';
  if (sameLan || b === undefined) {
    if (b && formatProfile(a) !== formatProfile(b))
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `same-lan puts both peers behind one NAT: give it once (or twice the same), not with ${formatProfile(a.name === 'same-lan' ? b : a)}`,
      );
    const lab = await Lab.create({
      ...base,
      sites: [{ name: 'a', profile: a, hosts: Math.max(2, PROFILES[a.name].hosts) }],
    });
    return { lab, peers: ['a1', 'a2'] };
  }
  const lab = await Lab.create({
    ...base,
    sites: [
      { name: 'a', profile: a },
      { name: 'b', profile: b },
    ],
  });
  return { lab, peers: ['a1', 'b1'] };
}

/** Parses JSON-object lines, skipping anything else. Never throws. */
export function parseJsonLines(text: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const l of text.split('\n')) {
    if (!l.startsWith('{')) continue;
    try {
      const v: unknown = JSON.parse(l);
      if (typeof v === 'object' && v !== null) out.push(v as Record<string, unknown>);
    } catch {
      // skip
    }
  }
  return out;
}
