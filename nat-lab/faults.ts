/**
 * Fault injection on a running lab. Each fault acts on a site (its NAT namespaces), a host, or a named process:
 *
 *   natReboot(lab, site)           every mapping forgotten: `conntrack -F` in the site's NAT namespace(s) and the
 *                                  learned EIF/ADF/hairpin state (nft map/set) emptied, as after a router reboot.
 *                                  miniupnpd's port mappings survive (it is not restarted).
 *   setUdpTimeouts(lab, site, t)   short mapping lifetimes: net.netfilter.nf_conntrack_udp_timeout / _stream in the
 *                                  site's NAT namespace(s) (per-namespace sysctls); learned state follows.
 *   setLink(lab, target, up)       a site's WAN link (target = site name) or a host's LAN link (target = host)
 *                                  down or up; routes the kernel dropped with the link are put back on up.
 *   roam(lab, host, ip?)           the host gets a new LAN address (next free one unless given); its routes are
 *                                  rebuilt. Old NAT mappings are left to expire, as on a real network.
 *   restartProcess(lab, name)      kills a spawned process and starts it again (e.g. 'derp', 'stun').
 *   blockUdp(lab, a, b, on)        UDP forwarded between sites a and b is dropped in the internet namespace (table
 *                                  `ip natlab_block`), or no longer; STUN and DERP (both local to the internet
 *                                  namespace) still work — the direct path dies silently, as on a real network.
 */
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { nthAddr, parseCidr } from './plan.js';
import { DEFAULT_UDP_TIMEOUTS, type Lab } from './topology.js';
import type { LabProcess } from './process.js';
import type { RouterInfo } from './state.js';

function natNodes(lab: Lab, site: string): RouterInfo[] {
  const s = lab.site(site);
  return [s.router, ...(s.carrier ? [s.carrier] : [])].map((n) => lab.router(n)).filter((r) => r.mode !== 'none');
}

/** Forgets every NAT mapping of `site` (conntrack and learned nft state). */
export async function natReboot(lab: Lab, site: string): Promise<void> {
  const nodes = natNodes(lab, site);
  if (nodes.length === 0) throw new MeshsockError(ErrorCode.BAD_CONFIG, `site ${site} has no NAT to reboot`);
  for (const r of nodes) {
    await lab.applyNatRules(r.name); // a fresh table: empty pmap/seen
    await lab.exec(r.name, ['conntrack', '-F'], { check: false }); // exits 1 when the table was already empty
  }
}

/** Sets the conntrack UDP timeouts (seconds) of `site`'s NAT namespace(s). */
export async function setUdpTimeouts(lab: Lab, site: string, t: { udp: number; stream?: number }): Promise<void> {
  const stream = t.stream ?? Math.max(t.udp, DEFAULT_UDP_TIMEOUTS.stream);
  for (const v of [t.udp, stream])
    if (!Number.isInteger(v) || v < 1 || v > 86_400)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `UDP timeout must be 1..86400 s, got ${v}`);
  const nodes = natNodes(lab, site);
  if (nodes.length === 0) throw new MeshsockError(ErrorCode.BAD_CONFIG, `site ${site} has no NAT`);
  for (const r of nodes) {
    await lab.exec(r.name, [
      'sysctl',
      '-q',
      '-w',
      `net.netfilter.nf_conntrack_udp_timeout=${t.udp}`,
      `net.netfilter.nf_conntrack_udp_timeout_stream=${stream}`,
    ]);
    lab.state.udpTimeouts[r.name] = { udp: t.udp, stream };
    await lab.applyNatRules(r.name);
  }
  lab.save();
}

/** Takes a site's WAN link (target = site) or a host's link (target = host) down or up. */
export async function setLink(lab: Lab, target: string, up: boolean): Promise<void> {
  const state = up ? 'up' : 'down';
  if (lab.state.hosts[target]) {
    const h = lab.host(target);
    await lab.exec(h.name, ['ip', 'link', 'set', 'dev', h.iface, state]);
    if (up) await lab.exec(h.name, ['ip', 'route', 'replace', 'default', 'via', h.gateway]);
    return;
  }
  if (lab.state.sites[target]) {
    const s = lab.site(target);
    const outer = lab.router(s.carrier ?? s.router);
    await lab.exec(outer.name, ['ip', 'link', 'set', 'dev', outer.wan, state]);
    if (up) await lab.exec(outer.name, ['ip', 'route', 'replace', 'default', 'via', outer.upstream]);
    return;
  }
  throw new MeshsockError(
    ErrorCode.BAD_CONFIG,
    `no site or host ${JSON.stringify(target)}; sites: ${Object.keys(lab.state.sites).join(', ')}; hosts: ${Object.keys(lab.state.hosts).join(', ')}`,
  );
}

/** Gives `host` a new LAN address (the next free one unless `ip` is given); returns the old and new address. */
export async function roam(lab: Lab, host: string, ip?: string): Promise<{ from: string; to: string }> {
  const h = lab.host(host);
  const site = lab.site(h.site);
  const net = parseCidr(site.lanCidr)!;
  const used = new Set([
    lab.router(site.router).lanIp,
    ...lab.hosts.filter((x) => x.site === site.name).map((x) => x.ip),
  ]);
  let to = ip;
  if (to === undefined) {
    for (let n = 2; n < 2 ** (32 - net.len) - 1; n++) {
      const cand = nthAddr(net.base, n);
      if (!used.has(cand) && n > 9) {
        to = cand;
        break;
      }
    }
    if (to === undefined) throw new MeshsockError(ErrorCode.BAD_CONFIG, `no free address left in ${site.lanCidr}`);
  } else {
    const c = parseCidr(`${to}/${net.len}`);
    if (!c || c.base !== net.base) throw new MeshsockError(ErrorCode.BAD_CONFIG, `${to} is not in ${site.lanCidr}`);
    if (used.has(to)) throw new MeshsockError(ErrorCode.BAD_CONFIG, `${to} is already in use`);
  }
  const from = h.ip;
  await lab.exec(h.name, ['ip', '-batch', '-'], {
    input: [
      `addr flush dev ${h.iface}`,
      `addr add ${to}/${h.prefixLen} dev ${h.iface}`,
      `route replace default via ${h.gateway}`,
      '',
    ].join('\n'),
  });
  h.ip = to;
  if (site.spec.name === 'open' && site.hosts[0] === h.name) site.publicIp = to;
  lab.save();
  return { from, to };
}

/** Restarts a process started with `lab.spawn` (e.g. `'derp'` from `lab.startDerp`, or `'stun'`). */
export async function restartProcess(lab: Lab, name: string): Promise<LabProcess> {
  const p = lab.process(name);
  if (!p)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `no process named ${JSON.stringify(name)} in lab ${lab.prefix}`);
  await p.restart();
  lab.noteRestart(p);
  return p;
}

/** nft table in the internet namespace that holds the blockUdp rules. */
const BLOCK_TABLE = 'natlab_block';

/**
 * Drops (`blocked` true) or stops dropping UDP forwarded between sites `a` and `b` in the internet namespace, in
 * both directions. Traffic to and from the internet namespace's own services (STUN, DERP) is not forwarded, so it
 * is untouched: the two peers lose their direct path and keep DERP. Idempotent either way.
 */
export async function blockUdp(lab: Lab, a: string, b: string, blocked: boolean): Promise<void> {
  if (lab.site(a).inetIface === lab.site(b).inetIface)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, 'blockUdp needs two different sites');
  // The table is rebuilt from the set of blocked pairs, so (un)blocking one pair leaves the others alone.
  const pairs = new Set(lab.state.blockedUdp ?? []);
  const key = [a, b].sort().join(' ');
  if (blocked) pairs.add(key);
  else pairs.delete(key);
  const rules = [...pairs].flatMap((k) => {
    const [x, y] = k.split(' ') as [string, string];
    const ix = lab.site(x).inetIface;
    const iy = lab.site(y).inetIface;
    return [
      `add rule ip ${BLOCK_TABLE} forward iifname "${ix}" oifname "${iy}" meta l4proto udp counter drop`,
      `add rule ip ${BLOCK_TABLE} forward iifname "${iy}" oifname "${ix}" meta l4proto udp counter drop`,
    ];
  });
  const script = [
    `table ip ${BLOCK_TABLE} {}`,
    `delete table ip ${BLOCK_TABLE}`,
    ...(rules.length
      ? [
          `add table ip ${BLOCK_TABLE}`,
          `add chain ip ${BLOCK_TABLE} forward { type filter hook forward priority -10; policy accept; }`,
          ...rules,
        ]
      : []),
    '',
  ].join('\n');
  await lab.exec('inet', ['nft', '-f', '-'], { input: script });
  lab.state.blockedUdp = [...pairs];
  lab.save();
}

/** The faults by CLI name, with their arguments and what they do. */
export const FAULTS = {
  'nat-reboot': { args: 'SITE', about: 'forget every NAT mapping of SITE (conntrack -F and learned nft state)' },
  'udp-timeout': {
    args: 'SITE SECONDS [STREAM_SECONDS]',
    about: "set conntrack UDP timeouts in SITE's NAT namespace(s)",
  },
  'link-down': { args: 'SITE|HOST', about: "take a site's WAN link or a host's link down" },
  'link-up': { args: 'SITE|HOST', about: 'bring it back up (routes restored)' },
  roam: { args: 'HOST [NEW_IP]', about: 'give HOST a new LAN address (routes fixed)' },
  restart: { args: 'PROCESS', about: 'kill and restart a lab process by name (e.g. derp, stun)' },
  'block-udp': { args: 'SITE SITE', about: 'drop UDP between two sites in the internet (STUN and DERP still work)' },
  'unblock-udp': { args: 'SITE SITE', about: 'stop dropping UDP between two sites' },
} as const;

export type FaultName = keyof typeof FAULTS;

/** Runs a fault by CLI name with string arguments; returns a one-line description of what was done. */
export async function runFault(lab: Lab, name: string, args: readonly string[]): Promise<string> {
  const need = (n: number): void => {
    if (args.length < n || args.length > n + 1)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `fault ${name} takes ${FAULTS[name as FaultName]?.args ?? '?'}`);
  };
  switch (name) {
    case 'nat-reboot':
      need(1);
      await natReboot(lab, args[0]!);
      return `NAT of site ${args[0]} rebooted (mappings forgotten)`;
    case 'udp-timeout': {
      need(2);
      const udp = Number(args[1]);
      const stream = args[2] === undefined ? undefined : Number(args[2]);
      await setUdpTimeouts(lab, args[0]!, { udp, ...(stream === undefined ? {} : { stream }) });
      const t = lab.state.udpTimeouts[lab.site(args[0]!).router];
      return `site ${args[0]} UDP timeouts now ${t?.udp} s (unreplied) / ${t?.stream} s (stream)`;
    }
    case 'link-down':
    case 'link-up':
      need(1);
      if (args.length !== 1) throw new MeshsockError(ErrorCode.BAD_CONFIG, `fault ${name} takes SITE|HOST`);
      await setLink(lab, args[0]!, name === 'link-up');
      return `${args[0]} link ${name === 'link-up' ? 'up' : 'down'}`;
    case 'roam': {
      need(1);
      const r = await roam(lab, args[0]!, args[1]);
      return `${args[0]} moved from ${r.from} to ${r.to}`;
    }
    case 'restart': {
      need(1);
      if (args.length !== 1) throw new MeshsockError(ErrorCode.BAD_CONFIG, 'fault restart takes PROCESS');
      const p = await restartProcess(lab, args[0]!);
      return `${p.name} restarted (pid ${p.pid})`;
    }
    case 'block-udp':
    case 'unblock-udp': {
      if (args.length !== 2) throw new MeshsockError(ErrorCode.BAD_CONFIG, `fault ${name} takes SITE SITE`);
      await blockUdp(lab, args[0]!, args[1]!, name === 'block-udp');
      return `UDP between sites ${args[0]} and ${args[1]} ${name === 'block-udp' ? 'dropped' : 'flows again'}`;
    }
    default:
      throw new MeshsockError(
        ErrorCode.BAD_CONFIG,
        `unknown fault ${JSON.stringify(name)}; one of ${Object.keys(FAULTS).join(', ')}`,
      );
  }
}
