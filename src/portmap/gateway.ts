/**
 * Which gateway the port mapper may talk to. By default it is the IPv4 default gateway from the kernel's routing
 * table (`/proc/net/route`), and only when that address is private (RFC 1918): on a cloud VM or a host with a
 * public gateway there is no home router to ask, and we must never send mapping requests to a public address
 * (tailscale-protocols.md §5, `ErrGatewayRange`). An explicit gateway may also be a loopback address (tests) or in
 * the RFC 6598 shared range 100.64.0.0/10 (a carrier's PCP server); never a public one.
 *
 * `/proc/net/route` (one line per route, hex fields in host byte order):
 *
 *   Iface  Destination  Gateway   Flags  RefCnt  Use  Metric  Mask      MTU  Window  IRTT
 *   eth0   00000000     0101A8C0  0003   0       0    100     00000000  0    0       0
 *
 * Destination 0 with mask 0 is a default route; flags 0x1 (RTF_UP) | 0x2 (RTF_GATEWAY); lowest metric wins.
 * On a little-endian host 0101A8C0 reads as 192.168.1.1.
 */
import { parseIPv4 } from '../internal/addr.js';

/** One IPv4 route from /proc/net/route. */
export interface RouteEntry {
  readonly iface: string;
  readonly destination: string;
  readonly gateway: string;
  readonly flags: number;
  readonly metric: number;
  readonly mask: string;
}

const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

function hexIp(h: string, littleEndian: boolean): string | undefined {
  if (!/^[0-9a-fA-F]{8}$/.test(h)) return undefined;
  const v = parseInt(h, 16);
  const b = [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  return (littleEndian ? b.reverse() : b).join('.');
}

/** Parses the text of /proc/net/route; malformed lines are skipped. Never throws. */
export function parseProcNetRoute(text: string, littleEndian = true): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const line of String(text).split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const destination = hexIp(f[1]!, littleEndian);
    const gateway = hexIp(f[2]!, littleEndian);
    const mask = hexIp(f[7]!, littleEndian);
    const flags = parseInt(f[3]!, 16);
    const metric = Number(f[6]);
    if (!destination || !gateway || !mask || !Number.isFinite(flags) || !Number.isFinite(metric)) continue;
    out.push({ iface: f[0]!, destination, gateway, flags, metric, mask });
  }
  return out;
}

/** The IPv4 default gateway in /proc/net/route text (lowest metric), or undefined. Never throws. */
export function defaultGatewayFromRoutes(text: string, littleEndian = true): string | undefined {
  const defaults = parseProcNetRoute(text, littleEndian).filter(
    (r) =>
      r.destination === '0.0.0.0' &&
      r.mask === '0.0.0.0' &&
      (r.flags & (RTF_UP | RTF_GATEWAY)) === (RTF_UP | RTF_GATEWAY) &&
      r.gateway !== '0.0.0.0',
  );
  defaults.sort((a, b) => a.metric - b.metric);
  return defaults[0]?.gateway;
}

/** True for 10/8, 172.16/12 and 192.168/16 (RFC 1918). Never throws. */
export function isRfc1918(ip: string): boolean {
  const b = parseIPv4(String(ip));
  if (!b) return false;
  return b[0] === 10 || (b[0] === 172 && b[1]! >= 16 && b[1]! < 32) || (b[0] === 192 && b[1] === 168);
}

/** True for 100.64.0.0/10 (RFC 6598 shared address space, carrier-grade NAT). Never throws. */
export function isSharedAddressSpace(ip: string): boolean {
  const b = parseIPv4(String(ip));
  return b !== undefined && b[0] === 100 && b[1]! >= 64 && b[1]! < 128;
}

/** True for 127.0.0.0/8. Never throws. */
export function isLoopbackV4(ip: string): boolean {
  const b = parseIPv4(String(ip));
  return b !== undefined && b[0] === 127;
}

/**
 * Why `ip` may not be used as an explicitly configured gateway, or undefined when it may: it must be IPv4 and
 * private (RFC 1918), shared (RFC 6598) or loopback. Never throws.
 */
export function explicitGatewayProblem(ip: string): string | undefined {
  if (parseIPv4(String(ip)) === undefined)
    return `gateway ${String(ip)} is not an IPv4 address (only IPv4 gateways are supported)`;
  if (isRfc1918(ip) || isSharedAddressSpace(ip) || isLoopbackV4(ip)) return undefined;
  return `gateway ${ip} is not a private address (RFC 1918, RFC 6598 or loopback)`;
}

/** An external address a peer could reach us at: IPv4, not 0.0.0.0, loopback, link-local or multicast. */
export function usablePublicIp(ip: string): boolean {
  const b = parseIPv4(ip);
  if (!b) return false;
  return !(b[0] === 0 || b[0] === 127 || (b[0] === 169 && b[1] === 254) || b[0]! >= 224);
}
