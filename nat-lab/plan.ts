/**
 * nat-lab's naming and address plan: one table, each value with the reason it has it.
 *
 * Every namespace is `<prefix>-<node>`; every interface is `<prefix>-<role>` and lives only inside lab
 * namespaces (never in the root namespace). The prefix is `nl` + 4 hex digits, so the longest interface name,
 * `nl1a2b-s-abcd` (13 characters), fits IFNAMSIZ (15 + NUL).
 */
import { randomBytes } from 'node:crypto';

/** Addresses and ports of the lab "internet". Only documentation/benchmark ranges and CGNAT space are used. */
export const PLAN = {
  /** RFC 5737 TEST-NET-3: the STUN server's primary address (coturn listens here, RFC 5780 primary). */
  stunPrimary: '203.0.113.1',
  /** Second STUN address, so mapping can be compared across destination addresses (RFC 5780 alternate). */
  stunSecondary: '203.0.113.2',
  /** coturn's listening port and its RFC 5780 alternate port (listening port + 1). */
  stunPort: 3478,
  stunAltPort: 3479,
  /** Never contacted by lab hosts: the "new address" that filtering tests send from. */
  outsider: '203.0.113.3',
  /** TCP listeners for the udp-blocked checks (a separate address so the DERP slot stays free). */
  tcpProbe: '203.0.113.4',
  /** The DERP server's address; port 80 because udp-blocked sites only let TCP 80/443 out. */
  derp: '203.0.113.10',
  derpPort: 80,
  /** RFC 2544 benchmark range: site WAN links are 198.18.<site>.0/24, internet side .1, site side .2. */
  wanNet: (site: number): string => `198.18.${site}.0/24`,
  wanInet: (site: number): string => `198.18.${site}.1`,
  wanSite: (site: number): string => `198.18.${site}.2`,
  /** RFC 5737 TEST-NET-2: `open` sites' LANs are public, 198.51.100.<16·site>/28 (so at most 15 sites). */
  openLanBase: (site: number): number => 16 * site,
  /** RFC 6598 shared address space between a CGNAT carrier router (.1) and the home router (.2). */
  cgnatNet: (site: number): string => `100.64.${site}.0/24`,
  cgnatCarrier: (site: number): string => `100.64.${site}.1`,
  cgnatHome: (site: number): string => `100.64.${site}.2`,
  /** RFC 1918 home LAN, one /24 per site unless a site asks for another: router .1, hosts .10, .11, … */
  lan: (site: number): string => `192.168.${site}.0/24`,
  /** Where host addresses start inside a LAN (.10), and how many hosts a site may have. */
  firstHost: 10,
  maxHosts: 8,
  /** Sites are numbered 1..maxSites (bounded by the /28 split of TEST-NET-2 for open sites). */
  maxSites: 15,
} as const;

/** Where state files and per-run directories live (tmpfs, gone after a reboot like the namespaces). */
export const RUN_ROOT = '/run/nat-lab';

/** Environment variable set on every lab process, so teardown can find processes that escaped a namespace. */
export const PREFIX_ENV = 'NAT_LAB_PREFIX';

/** A fresh per-run prefix: `nl` + 4 hex digits. */
export function newPrefix(): string {
  return `nl${randomBytes(2).toString('hex')}`;
}

/** True for a well-formed prefix. Never throws. */
export function isPrefix(s: unknown): s is string {
  return typeof s === 'string' && /^nl[0-9a-f]{4}$/.test(s);
}

/** Matches every namespace name any nat-lab run creates. */
export const ANY_PREFIX_NS = /^nl[0-9a-f]{4}-/;

/** Namespace name of `node` in run `prefix`. */
export function nsName(prefix: string, node: string): string {
  return `${prefix}-${node}`;
}

/** Interface name `<prefix>-<role>`; throws if it would not fit IFNAMSIZ. */
export function ifName(prefix: string, role: string): string {
  const n = `${prefix}-${role}`;
  if (n.length > 15) throw new RangeError(`interface name ${n} is longer than 15 characters`);
  return n;
}

/** A site name: 1–4 lowercase letters (it goes into interface names; hosts are the name plus a digit). */
export function isSiteName(s: unknown): s is string {
  return typeof s === 'string' && /^[a-z]{1,4}$/.test(s);
}

/** `a.b.c.d/len` → network base as number and prefix length; undefined when malformed. */
export function parseCidr(cidr: string): { base: number; len: number } | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) return undefined;
  const oct = m.slice(1, 5).map(Number);
  const len = Number(m[5]);
  if (oct.some((o) => o > 255) || len > 32 || len < 8) return undefined;
  const ip = ((oct[0]! << 24) | (oct[1]! << 16) | (oct[2]! << 8) | oct[3]!) >>> 0;
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { base: (ip & mask) >>> 0, len };
}

/** The `n`th address of a network (`n` = 1 is the first usable one). */
export function nthAddr(base: number, n: number): string {
  const v = (base + n) >>> 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}
