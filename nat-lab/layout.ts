/**
 * Lab layout: from a LabSpec to the full description of every node, address and route (`LabState`), before
 * anything is created. topology.ts then builds exactly this.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { PLAN, RUN_ROOT, ifName, isSiteName, newPrefix, nsName, nthAddr, parseCidr } from './plan.js';
import { labNamespaces } from './cleanup.js';
import { PROFILES, formatProfile, parseProfile, type ProfileSpec } from './profiles.js';
import { isNoop, linkMechanism, parseLink, type LinkMechanism, type LinkSpec } from './link.js';
import type { LabState, NodeInfo } from './state.js';

/** One site: a NAT router (two for cgnat) and one or more hosts on its LAN. */
export interface SiteSpec {
  /** 1–4 lowercase letters; hosts are named `<site>1`, `<site>2`, … */
  name: string;
  /** `easy`, `hard`, `same-lan+hairpin`, … (profiles.ts). */
  profile: string | ProfileSpec;
  /** Hosts on the LAN (default: the profile's, 1 or 2). */
  hosts?: number;
  /** Link preset for this site's WAN link (overrides LabSpec.link). */
  link?: string | LinkSpec;
  /** LAN range, e.g. to give two sites the same 192.168.1.0/24 (default 192.168.<index>.0/24). */
  lanCidr?: string;
}

export interface LabSpec {
  sites: SiteSpec[];
  /** Run prefix (default: a fresh `nl` + 4 hex). */
  prefix?: string;
  /** Link preset for every site's WAN link. */
  link?: string | LinkSpec;
  /** Keep the lab when this process exits (`nat-lab up`); otherwise it is torn down on exit and on signals. */
  persist?: boolean;
  /** Start coturn in the internet namespace (default true). */
  stun?: boolean;
}

/** A prefix no namespace, state file or run directory uses yet. */
export function uniquePrefix(): string {
  const used = new Set(labNamespaces().map((n) => n.slice(0, 6)));
  for (let i = 0; i < 100; i++) {
    const p = newPrefix();
    if (!used.has(p) && !existsSync(join(RUN_ROOT, `${p}.json`)) && !existsSync(join(RUN_ROOT, p))) return p;
  }
  throw new MeshsockError(ErrorCode.COMMAND, 'could not find a free nat-lab prefix');
}

/** Works out every node, address and route of the lab (no side effects except probing for netem once). */
export function planLab(prefix: string, spec: LabSpec): LabState {
  if (!Array.isArray(spec.sites) || spec.sites.length === 0)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, 'a lab needs at least one site');
  if (spec.sites.length > PLAN.maxSites)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `at most ${PLAN.maxSites} sites`);
  const runDir = join(RUN_ROOT, prefix);
  const defaultLink = spec.link === undefined ? null : parseLink(spec.link);
  const needsLink = spec.sites.some((x) => {
    const l = x.link === undefined ? defaultLink : parseLink(x.link);
    return l !== null && !isNoop(l);
  });
  const mechanism: LinkMechanism | null = needsLink ? linkMechanism(nsName(prefix, 'probe')) : null;
  const s: LabState = {
    version: 1,
    prefix,
    createdAt: new Date().toISOString(),
    ownerPid: process.pid,
    persist: spec.persist === true,
    runDir,
    linkMechanism: mechanism,
    nodes: { inet: { name: 'inet', ns: nsName(prefix, 'inet'), role: 'inet' } },
    hosts: {},
    routers: {},
    sites: {},
    stun: { primary: PLAN.stunPrimary, secondary: PLAN.stunSecondary, port: PLAN.stunPort, altPort: PLAN.stunAltPort },
    derp: { ip: PLAN.derp, port: PLAN.derpPort, url: `http://${PLAN.derp}:${PLAN.derpPort}/derp` },
    udpTimeouts: {},
    processes: [],
  };
  const node = (name: string, role: NodeInfo['role'], site?: string): void => {
    s.nodes[name] = { name, ns: nsName(prefix, name), role, ...(site ? { site } : {}) };
  };
  spec.sites.forEach((ss, i) => {
    const index = i + 1;
    if (!isSiteName(ss.name))
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `bad site name ${JSON.stringify(ss.name)} (1-4 lowercase letters)`);
    if (s.sites[ss.name]) throw new MeshsockError(ErrorCode.BAD_CONFIG, `duplicate site ${ss.name}`);
    const spec1 = parseProfile(ss.profile);
    const prof = PROFILES[spec1.name];
    const nHosts = ss.hosts ?? prof.hosts;
    if (!Number.isInteger(nHosts) || nHosts < 1 || nHosts > PLAN.maxHosts)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `site ${ss.name}: hosts must be 1..${PLAN.maxHosts}`);
    const open = prof.mode === 'none';
    const lanCidr = ss.lanCidr ?? (open ? `198.51.100.${PLAN.openLanBase(index)}/28` : PLAN.lan(index));
    const net = parseCidr(lanCidr);
    if (!net || net.len > 29) throw new MeshsockError(ErrorCode.BAD_CONFIG, `site ${ss.name}: bad LAN ${lanCidr}`);
    const firstHost = net.len >= 28 ? 2 : PLAN.firstHost;
    if (firstHost + nHosts >= 2 ** (32 - net.len))
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `site ${ss.name}: LAN ${lanCidr} too small`);
    const link = ss.link === undefined ? defaultLink : parseLink(ss.link);
    const routerName = `${ss.name}-rtr`;
    const carrierName = prof.carrier ? `${ss.name}-cgn` : undefined;
    const lanIp = nthAddr(net.base, 1);
    node(routerName, 'router', ss.name);
    s.routers[routerName] = {
      name: routerName,
      ns: nsName(prefix, routerName),
      site: ss.name,
      role: 'router',
      mode: prof.mode,
      hairpin: spec1.hairpin,
      wan: ifName(prefix, 'wan'),
      wanIp: carrierName ? PLAN.cgnatHome(index) : PLAN.wanSite(index),
      wanPrefixLen: 24,
      upstream: carrierName ? PLAN.cgnatCarrier(index) : PLAN.wanInet(index),
      lan: ifName(prefix, 'lan'),
      lanIp,
      lanCidr: `${nthAddr(net.base, 0)}/${net.len}`,
    };
    if (carrierName) {
      node(carrierName, 'carrier', ss.name);
      s.routers[carrierName] = {
        name: carrierName,
        ns: nsName(prefix, carrierName),
        site: ss.name,
        role: 'carrier',
        mode: 'easy',
        hairpin: false,
        wan: ifName(prefix, 'wan'),
        wanIp: PLAN.wanSite(index),
        wanPrefixLen: 24,
        upstream: PLAN.wanInet(index),
        lan: ifName(prefix, 'lan'),
        lanIp: PLAN.cgnatCarrier(index),
        lanCidr: PLAN.cgnatNet(index),
      };
    }
    const hosts: string[] = [];
    for (let h = 0; h < nHosts; h++) {
      const hn = `${ss.name}${h + 1}`;
      node(hn, 'host', ss.name);
      s.hosts[hn] = {
        name: hn,
        ns: nsName(prefix, hn),
        site: ss.name,
        ip: nthAddr(net.base, firstHost + h),
        prefixLen: net.len,
        gateway: lanIp,
        iface: ifName(prefix, 'eth0'),
      };
      hosts.push(hn);
    }
    const wire =
      link && !isNoop(link) && mechanism === 'delay-line' && (link.rttMs > 0 || link.jitterMs > 0)
        ? `${ss.name}-wire`
        : undefined;
    if (wire) node(wire, 'wire', ss.name);
    s.sites[ss.name] = {
      name: ss.name,
      index,
      profile: formatProfile(spec1),
      spec: spec1,
      hosts,
      router: routerName,
      ...(carrierName ? { carrier: carrierName } : {}),
      publicIp: open ? s.hosts[hosts[0]!]!.ip : PLAN.wanSite(index),
      lanCidr: `${nthAddr(net.base, 0)}/${net.len}`,
      link,
      ...(wire ? { wire } : {}),
      inetIface: ifName(prefix, `s-${ss.name}`),
    };
  });
  return s;
}
