/**
 * NAT profiles: what each one is (RFC 4787 mapping × filtering), what a site built for it looks like, and the
 * nftables rules its router(s) get.
 *
 * Mapping (RFC 4787 §4.1): EIM = endpoint-independent (one public port whatever the destination), ADM/APDM =
 * address(-and-port)-dependent ("hard"/symmetric). Filtering (§5): EIF = anything may send to the mapped port,
 * ADF = only addresses the host has sent to, APDF = only exact address:port pairs the host has sent to.
 *
 * How the rules get there on Linux (measured, see reference/baselines.md):
 *   - plain `masquerade` keeps the source port and reuses the mapping per destination: EIM; conntrack only lets
 *     replies in: APDF. That is `easy`.
 *   - `masquerade random` picks a new port per destination: EDM (`hard`).
 *   - EIF and ADF need state beyond conntrack. The router learns, from the packet path, each mapped port's inside
 *     endpoint (dynamic map `pmap`, filled after masquerade in postrouting) and, for ADF, every (mapped port,
 *     remote address) pair it has sent to (dynamic set `seen`). Inbound new flows to a mapped port are DNATed back
 *     through `pmap` — always (`full-cone`) or only when `seen` has the pair (`easy-af`).
 *   - Hairpin (`+hairpin`): a LAN packet to the router's public address is DNATed through `pmap` and SNATed to the
 *     public address, so the target sees the sender's public mapping, as on routers that support NAT loopback.
 */
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { PLAN } from './plan.js';

/** How the NAT router(s) of a site translate. */
export type NatMode = 'none' | 'easy' | 'easy-af' | 'full-cone' | 'hard' | 'udp-blocked' | 'portmap';

export type Mapping = 'none' | 'EIM' | 'ADM' | 'APDM';
export type Filtering = 'EIF' | 'ADF' | 'APDF';

/** Every profile: its RFC 4787 behaviour and the shape of the site built for it. */
export const PROFILES = {
  open: {
    about: 'no NAT: the host has an internet address and no firewall',
    mapping: 'none',
    filtering: 'EIF',
    mode: 'none',
    carrier: false,
    hosts: 1,
  },
  easy: {
    about: 'EIM + address-and-port-dependent filtering (plain masquerade; most home routers)',
    mapping: 'EIM',
    filtering: 'APDF',
    mode: 'easy',
    carrier: false,
    hosts: 1,
  },
  'easy-af': {
    about: 'EIM + address-dependent filtering ("restricted cone")',
    mapping: 'EIM',
    filtering: 'ADF',
    mode: 'easy-af',
    carrier: false,
    hosts: 1,
  },
  'full-cone': {
    about: 'EIM + endpoint-independent filtering ("full cone")',
    mapping: 'EIM',
    filtering: 'EIF',
    mode: 'full-cone',
    carrier: false,
    hosts: 1,
  },
  hard: {
    about: 'endpoint-dependent mapping with random ports (masquerade random; "symmetric", corporate/cloud NAT)',
    mapping: 'APDM',
    filtering: 'APDF',
    mode: 'hard',
    carrier: false,
    hosts: 1,
  },
  cgnat: {
    about: 'two NAT tiers: a home router (easy) behind a carrier-grade NAT on 100.64.0.0/10 (easy, no hairpin)',
    mapping: 'EIM',
    filtering: 'APDF',
    mode: 'easy',
    carrier: true,
    hosts: 1,
  },
  'udp-blocked': {
    about: 'only TCP 80 and 443 leave the site (strict corporate or guest network)',
    mapping: 'EIM',
    filtering: 'APDF',
    mode: 'udp-blocked',
    carrier: false,
    hosts: 1,
  },
  portmap: {
    about: 'easy, plus miniupnpd offering NAT-PMP, PCP and UPnP-IGD port mappings',
    mapping: 'EIM',
    filtering: 'APDF',
    mode: 'portmap',
    carrier: false,
    hosts: 1,
  },
  'same-lan': {
    about: 'both peers behind one easy NAT on one LAN (add +hairpin for NAT loopback)',
    mapping: 'EIM',
    filtering: 'APDF',
    mode: 'easy',
    carrier: false,
    hosts: 2,
  },
} as const satisfies Record<
  string,
  { about: string; mapping: Mapping; filtering: Filtering; mode: NatMode; carrier: boolean; hosts: number }
>;

export type ProfileName = keyof typeof PROFILES;
export const PROFILE_NAMES = Object.keys(PROFILES) as ProfileName[];

/** A profile plus its modifiers, written `name` or `name+hairpin`. */
export interface ProfileSpec {
  name: ProfileName;
  hairpin: boolean;
}

/** True when `s` is a profile name. Never throws. */
export function isProfileName(s: unknown): s is ProfileName {
  return typeof s === 'string' && Object.hasOwn(PROFILES, s);
}

/** Parses `easy`, `same-lan+hairpin`, …; throws BAD_CONFIG naming the valid choices. */
export function parseProfile(text: string | ProfileSpec): ProfileSpec {
  if (typeof text !== 'string') return text;
  const [name, ...mods] = text.split('+');
  if (!isProfileName(name))
    throw new MeshsockError(
      ErrorCode.BAD_CONFIG,
      `unknown profile ${JSON.stringify(name)}; one of ${PROFILE_NAMES.join(', ')}`,
    );
  let hairpin = false;
  for (const m of mods) {
    if (m !== 'hairpin')
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `unknown profile modifier +${m} (only +hairpin)`);
    hairpin = true;
  }
  const p = PROFILES[name];
  if (hairpin && (p.mapping !== 'EIM' || p.carrier || p.mode === 'udp-blocked'))
    throw new MeshsockError(
      ErrorCode.BAD_CONFIG,
      `${name} cannot have +hairpin (only single-tier EIM NATs: easy, easy-af, full-cone, portmap, same-lan)`,
    );
  return { name, hairpin };
}

export function formatProfile(p: ProfileSpec): string {
  return p.hairpin ? `${p.name}+hairpin` : p.name;
}

/** What a site's NAT should look like from outside; the self-test measures the same fields. */
export interface Behaviour {
  /** UDP reaches the internet at all (STUN answers). */
  udp: boolean;
  /** Mapping per destination; `none` when the mapped address is the host's own (no NAT). */
  mapping: Mapping | null;
  /** Which unsolicited senders reach a mapped port. */
  filtering: Filtering | null;
  /** A packet from the LAN to the site's public mapping reaches the host. */
  hairpin: boolean | null;
  /** The NAT keeps the host's source port. */
  portPreserved: boolean | null;
  /** TCP to port 443 / to another port (8080) leaves the site. */
  tcp443: boolean;
  tcpOther: boolean;
  /** The router grants NAT-PMP, PCP and UPnP-IGD mappings, and a mapped port accepts any sender. */
  portmap: boolean;
  /** A second host on the same LAN reaches the first at its LAN address. */
  lan: boolean | null;
}

/** The behaviour a profile promises. */
export function expectedBehaviour(specText: string | ProfileSpec): Behaviour {
  const spec = parseProfile(specText);
  const p = PROFILES[spec.name];
  const blocked = p.mode === 'udp-blocked';
  return {
    udp: !blocked,
    mapping: blocked ? null : p.mapping,
    filtering: blocked ? null : p.filtering,
    hairpin: blocked ? null : p.mode === 'none' ? true : spec.hairpin,
    portPreserved: blocked ? null : p.mapping !== 'APDM',
    tcp443: true,
    tcpOther: !blocked,
    portmap: p.mode === 'portmap',
    lan: p.hosts > 1 ? true : null,
  };
}

/** Inputs for one NAT router's ruleset. */
export interface RulesetOptions {
  mode: Exclude<NatMode, 'none'>;
  wan: string;
  lan: string;
  lanCidr: string;
  wanIp: string;
  hairpin: boolean;
  /** Lifetime of learned EIF/ADF state (pmap/seen), seconds; follows the conntrack UDP stream timeout. */
  stateTimeoutS: number;
}

/** The `ip natlab` table for a NAT router, as an `nft -f` script that replaces any previous version. */
export function natRuleset(o: RulesetOptions): string {
  const needPmap = o.mode === 'full-cone' || o.mode === 'easy-af' || o.hairpin;
  const needSeen = o.mode === 'easy-af';
  const q = (s: string): string => JSON.stringify(s);
  const t = Math.max(1, Math.round(o.stateTimeoutS));
  const L: string[] = [];
  L.push('table ip natlab {}', 'delete table ip natlab', 'table ip natlab {');
  if (needPmap)
    L.push(`  map pmap { type inet_service : ipv4_addr . inet_service; flags dynamic,timeout; timeout ${t}s; }`);
  if (needSeen) L.push(`  set seen { type inet_service . ipv4_addr; flags dynamic,timeout; timeout ${t}s; }`);
  L.push('  chain prerouting {', '    type nat hook prerouting priority dstnat; policy accept;');
  if (o.mode === 'full-cone') L.push(`    iifname ${q(o.wan)} meta l4proto udp dnat ip to udp dport map @pmap`);
  if (o.mode === 'easy-af')
    L.push(`    iifname ${q(o.wan)} meta l4proto udp udp dport . ip saddr @seen dnat ip to udp dport map @pmap`);
  if (o.hairpin) L.push(`    iifname ${q(o.lan)} ip daddr ${o.wanIp} meta l4proto udp dnat ip to udp dport map @pmap`);
  L.push('  }');
  L.push('  chain postrouting {', '    type nat hook postrouting priority srcnat; policy accept;');
  if (o.hairpin) L.push(`    oifname ${q(o.lan)} ip saddr ${o.lanCidr} ct status dnat snat ip to ${o.wanIp}`);
  L.push(`    oifname ${q(o.wan)} masquerade${o.mode === 'hard' ? ' random' : ''}`);
  L.push('  }');
  if (needPmap || needSeen) {
    L.push('  chain learn {', '    type filter hook postrouting priority srcnat + 1; policy accept;');
    if (needPmap)
      L.push(
        `    oifname ${q(o.wan)} meta l4proto udp ct direction original update @pmap { udp sport : ct original ip saddr . ct original proto-src }`,
      );
    if (needSeen) L.push(`    oifname ${q(o.wan)} meta l4proto udp update @seen { udp sport . ip daddr }`);
    L.push('  }');
  }
  L.push('  chain forward {', '    type filter hook forward priority filter; policy drop;');
  L.push('    ct state established,related accept');
  if (o.mode === 'udp-blocked') L.push(`    iifname ${q(o.lan)} oifname ${q(o.wan)} tcp dport { 80, 443 } accept`);
  else L.push(`    iifname ${q(o.lan)} oifname ${q(o.wan)} accept`);
  L.push('    ct status dnat accept');
  L.push('  }');
  L.push('  chain input {', '    type filter hook input priority filter; policy accept;');
  L.push(`    iifname ${q(o.wan)} ct state established,related accept`);
  if (o.mode === 'portmap')
    // miniupnpd's RFC 5780 check gets answers from the STUN server's other address/port: let them in.
    L.push(
      `    iifname ${q(o.wan)} ip saddr { ${PLAN.stunPrimary}, ${PLAN.stunSecondary} } udp sport { ${PLAN.stunPort}, ${PLAN.stunAltPort} } accept`,
    );
  L.push(`    iifname ${q(o.wan)} meta l4proto icmp accept`);
  L.push(`    iifname ${q(o.wan)} drop`);
  L.push('  }');
  L.push('}');
  return `${L.join('\n')}\n`;
}

/**
 * The chains miniupnpd-nftables expects (its nft_init.sh needs a helper script Debian does not ship): one
 * `inet filter` table with `miniupnpd` (forward), `prerouting_miniupnpd` and `postrouting_miniupnpd`.
 * The forward chain accepts by default; the `ip natlab` table does the filtering.
 */
export function miniupnpdTables(): string {
  return [
    'table inet filter {',
    '  chain forward { type filter hook forward priority filter; policy accept; jump miniupnpd; }',
    '  chain miniupnpd { }',
    '  chain prerouting { type nat hook prerouting priority dstnat; policy accept; jump prerouting_miniupnpd; }',
    '  chain postrouting { type nat hook postrouting priority srcnat; policy accept; jump postrouting_miniupnpd; }',
    '  chain prerouting_miniupnpd { }',
    '  chain postrouting_miniupnpd { }',
    '}',
    '',
  ].join('\n');
}

/**
 * miniupnpd.conf for a portmap router. `ext_perform_stun` is required because the WAN address is in a reserved
 * range (198.18.0.0/15), which miniupnpd otherwise treats as "not public" and refuses to forward.
 */
export function miniupnpdConfig(o: {
  wan: string;
  lan: string;
  lanCidr: string;
  uuid: string;
  leaseFile: string;
}): string {
  return [
    `ext_ifname=${o.wan}`,
    `listening_ip=${o.lan}`,
    'http_port=0',
    'enable_natpmp=yes',
    'enable_upnp=yes',
    'ext_perform_stun=yes',
    `ext_stun_host=${PLAN.stunPrimary}`,
    `ext_stun_port=${PLAN.stunPort}`,
    'secure_mode=yes',
    'system_uptime=yes',
    'notify_interval=60',
    'clean_ruleset_interval=600',
    `uuid=${o.uuid}`,
    `lease_file=${o.leaseFile}`,
    `allow 1024-65535 ${o.lanCidr} 1024-65535`,
    'deny 0-65535 0.0.0.0/0 0-65535',
    '',
  ].join('\n');
}
