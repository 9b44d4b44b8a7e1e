/**
 * Can this machine run labs? Root, working `ip netns`, nft, conntrack and coturn are needed; gcc only for the delay
 * line, miniupnpd/natpmpc/upnpc only for `portmap`. Used by the CLI (clear error) and the lab tests (one-line skip).
 */
import { have, runSync } from './exec.js';

export interface LabSupport {
  ok: boolean;
  /** Why not, in one line, with how to fix it. */
  reason: string;
  /** Optional tools that are missing (features that will not work). */
  missingOptional: string[];
}

/** Debian packages that provide each command nat-lab uses. */
export const PACKAGES = {
  ip: 'iproute2',
  tc: 'iproute2',
  nft: 'nftables',
  conntrack: 'conntrack',
  turnserver: 'coturn',
  miniupnpd: 'miniupnpd-nftables',
  natpmpc: 'natpmpc',
  upnpc: 'miniupnpc',
  gcc: 'gcc libc6-dev',
} as const;

let cached: LabSupport | undefined;

/** Checks once per process. Never throws. */
export function labSupport(): LabSupport {
  if (cached) return cached;
  const missingOptional = (['gcc', 'miniupnpd', 'natpmpc', 'upnpc'] as const)
    .filter((c) => !safeHave(c))
    .map((c) => `${c} (${PACKAGES[c]})`);
  const no = (reason: string): LabSupport => (cached = { ok: false, reason, missingOptional });
  if (process.platform !== 'linux') return no('nat-lab needs Linux network namespaces');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0)
    return no('needs root and ip netns — run `sudo npm test` (or as root)');
  const required = (['ip', 'nft', 'conntrack', 'turnserver'] as const).filter((c) => !safeHave(c));
  if (required.length > 0)
    return no(
      `missing ${required.join(', ')} — apt-get install ${[...new Set(required.map((c) => PACKAGES[c]))].join(' ')}`,
    );
  try {
    if (runSync(['ip', 'netns', 'list'], { check: false }).code !== 0)
      return no('`ip netns` does not work here (needs CAP_SYS_ADMIN and /run/netns)');
  } catch {
    return no('`ip netns` does not work here');
  }
  return (cached = { ok: true, reason: '', missingOptional });
}

function safeHave(cmd: string): boolean {
  try {
    return have(cmd);
  } catch {
    return false;
  }
}
