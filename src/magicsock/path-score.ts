/**
 * Path preference (tailscale-protocols.md §3.4, Tailscale's betterAddr): which of two direct paths is better.
 * The faster path earns its percentage improvement over the slower one as points; loopback, link-local, private
 * and IPv6 addresses earn bonuses; a candidate must beat the current path by more than ~1 % to replace it.
 */
import { ipClass, type AddrPort } from '../internal/addr.js';

export interface AddrQuality {
  readonly addr: AddrPort;
  readonly latencyMs: number;
}

const BONUS = {
  /** Same machine: nothing is faster or more reliable. */
  LOOPBACK: 50,
  /** Same link, no router in the way. */
  LINK_LOCAL: 30,
  /** Same site (RFC 1918 / ULA): survives the public address changing and skips the NAT. */
  PRIVATE: 20,
  /** No NAT, so no NAT timeouts. */
  IPV6: 10,
} as const;

function bonus(a: AddrPort): number {
  const c = ipClass(a.ip);
  let p = 0;
  if (c.loopback) p += BONUS.LOOPBACK;
  if (c.linkLocal) p += BONUS.LINK_LOCAL;
  if (c.private) p += BONUS.PRIVATE;
  if (c.v6) p += BONUS.IPV6;
  return p;
}

/** True when `a` should replace `b` as the best path. `b` undefined means there is no current path. */
export function betterAddr(a: AddrQuality, b: AddrQuality | undefined): boolean {
  if (!b) return true;
  if (a.addr.ip === b.addr.ip && a.addr.port === b.addr.port) return false;
  let aPoints = 0;
  let bPoints = 0;
  if (a.latencyMs < b.latencyMs && b.latencyMs > 0) aPoints = 100 - (100 * a.latencyMs) / b.latencyMs;
  else if (b.latencyMs < a.latencyMs && a.latencyMs > 0) bPoints = 100 - (100 * b.latencyMs) / a.latencyMs;
  aPoints += bonus(a.addr);
  bPoints += bonus(b.addr);
  // Hysteresis: an improvement of about 1 % or less is not worth a switch.
  if (aPoints <= 1 && bPoints === 0) return false;
  return aPoints > bPoints;
}
