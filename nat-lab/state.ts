/**
 * The lab description that outlives the process that built it: /run/nat-lab/<prefix>.json. `nat-lab up` writes it;
 * `exec`, `fault` and `down` read it. Written atomically (temp file + rename).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { RUN_ROOT, isPrefix } from './plan.js';
import type { LinkMechanism, LinkSpec } from './link.js';
import type { NatMode, ProfileSpec } from './profiles.js';
import type { ProcessRecord } from './process.js';

export type NodeRole = 'inet' | 'router' | 'carrier' | 'host' | 'wire';

/** One network namespace of the lab. */
export interface NodeInfo {
  name: string;
  ns: string;
  role: NodeRole;
  site?: string;
}

/** A host: where applications (peers, probes) run. */
export interface HostInfo {
  name: string;
  ns: string;
  site: string;
  /** LAN address and prefix length. */
  ip: string;
  prefixLen: number;
  gateway: string;
  iface: string;
}

/** A router (home NAT or carrier NAT, or a plain router for `open`). */
export interface RouterInfo {
  name: string;
  ns: string;
  site: string;
  role: 'router' | 'carrier';
  mode: NatMode;
  hairpin: boolean;
  wan: string;
  wanIp: string;
  wanPrefixLen: number;
  upstream: string;
  lan: string;
  lanIp: string;
  lanCidr: string;
}

export interface SiteInfo {
  name: string;
  index: number;
  profile: string;
  spec: ProfileSpec;
  hosts: string[];
  /** The home router (NAT, or plain router for `open`). */
  router: string;
  /** The carrier NAT (cgnat only). */
  carrier?: string;
  /** The address the internet sees (router WAN, carrier WAN, or the host's own for `open`). */
  publicIp: string;
  lanCidr: string;
  link: LinkSpec | null;
  /** Wire namespace node when the delay line is in use. */
  wire?: string;
  /** Interface in the internet namespace that leads to this site. */
  inetIface: string;
}

export interface LabState {
  version: 1;
  prefix: string;
  createdAt: string;
  ownerPid: number;
  persist: boolean;
  runDir: string;
  linkMechanism: LinkMechanism | null;
  nodes: Record<string, NodeInfo>;
  hosts: Record<string, HostInfo>;
  routers: Record<string, RouterInfo>;
  sites: Record<string, SiteInfo>;
  stun: { primary: string; secondary: string; port: number; altPort: number };
  derp: { ip: string; port: number; url: string };
  /** UDP timeouts (seconds) per NAT node, as last set (defaults 30/120). */
  udpTimeouts: Record<string, { udp: number; stream: number }>;
  /** Site pairs ("a b", sorted) whose UDP the internet drops (faults.blockUdp). */
  blockedUdp?: string[];
  processes: ProcessRecord[];
}

export function statePath(prefix: string): string {
  return join(RUN_ROOT, `${prefix}.json`);
}

export function saveState(s: LabState): void {
  mkdirSync(RUN_ROOT, { recursive: true });
  const p = statePath(s.prefix);
  const tmp = `${p}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(s, null, 2)}\n`);
  renameSync(tmp, p);
}

/** Reads a state file; throws BAD_CONFIG naming the prefix when there is none. */
export function loadState(prefix: string): LabState {
  if (!isPrefix(prefix))
    throw new MeshsockError(
      ErrorCode.BAD_CONFIG,
      `not a nat-lab prefix: ${JSON.stringify(prefix)} (expected nl + 4 hex digits)`,
    );
  const p = statePath(prefix);
  if (!existsSync(p)) throw new MeshsockError(ErrorCode.BAD_CONFIG, `no lab ${prefix} (no ${p})`);
  const s = JSON.parse(readFileSync(p, 'utf8')) as LabState;
  if (s.version !== 1 || s.prefix !== prefix)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `${p} is not a nat-lab v1 state file`);
  return s;
}
