/**
 * DERP map: the regions and nodes a client may relay through (tailscale-protocols.md §2.7, `tailcfg/derpmap.go`).
 *
 * The map is always supplied by the user; meshsock has no built-in map and no default that points at any public
 * host. `parseDerpMap` accepts two spellings of the same structure:
 *
 * - Tailscale's JSON (`DERPMap` as served by Headscale or written for derper users):
 *     { "Regions": { "900": { "RegionID": 900, "RegionCode": "home", "RegionName": "Home",
 *                             "Nodes": [ { "Name": "900a", "RegionID": 900, "HostName": "derp.example",
 *                                          "DERPPort": 443, "STUNPort": 3478 } ] } },
 *       "HomeParams": { "RegionScore": { "900": 0.9 } } }
 * - the same in camelCase (`regions`, `regionId`, `hostName`, `derpPort`, `stunPort`, …), where `regions` may also be
 *   an array and a node may carry `url: "http://127.0.0.1:8080"` (scheme, host and port in one string).
 *
 * Field names are matched case-insensitively, as Go's encoding/json does, so both spellings (and any mix) work.
 * Unknown fields (Latitude, Longitude, Avoid, future additions) are ignored.
 *
 * Node URL rules (`derpNodeUrl`): `https://HostName[:DERPPort]/derp` with DERPPort 0 meaning 443. Plain
 * `http://HostName:DERPPort/derp` (DERPPort 0 meaning 3340, derper's plain-HTTP dev port) when the node sets
 * `InsecureForTests` or an explicit `scheme: "http"` / `url: "http://…"`. An explicit `https` scheme together with
 * `InsecureForTests` gives TLS without certificate verification, which is what Tailscale's InsecureForTests means.
 */
import { ErrorCode, MeshsockError } from '../errors.js';
import { parseIPv4, parseIPv6 } from '../internal/addr.js';

/** Default ports and limits of the DERP map, each with its reason. */
export const DERP_MAP = {
  /** DERPPort 0 over TLS: derper's default listener (`-a :443`). */
  DEFAULT_HTTPS_PORT: 443,
  /** DERPPort 0 over plain HTTP: derper's `--dev` listener and Tailscale's TS_DEBUG_USE_DERP_HTTP dial port. */
  DEFAULT_HTTP_PORT: 3340,
  /** STUNPort 0: the IANA STUN port, derper's `--stun-port` default. */
  DEFAULT_STUN_PORT: 3478,
  /** STUNPort −1 disables STUN on a node. */
  STUN_DISABLED: -1,
  /** Region IDs must fit a JavaScript number (tailcfg.DERPRegionID.IsValid). */
  MAX_REGION_ID: Number.MAX_SAFE_INTEGER,
} as const;

/** One DERP (and/or STUN) server inside a region. Every field is normalised; see the module header. */
export interface DerpNode {
  /** Unique node name across the map, e.g. "900a". Not a host name. */
  readonly name: string;
  readonly regionId: number;
  /** DNS name or IP literal; used for the URL, the TLS server name and DNS lookups. */
  readonly hostName: string;
  /** Expected TLS certificate name (or `sha256-raw:<hex>`), when it differs from hostName. */
  readonly certName: string | undefined;
  /** IPv4 literal to dial instead of resolving hostName; `'none'` disables IPv4; undefined means use DNS. */
  readonly ipv4: string | undefined;
  /** IPv6 literal to dial instead of resolving hostName; `'none'` disables IPv6; undefined means use DNS. */
  readonly ipv6: string | undefined;
  /** STUN port: 3478 when the map said 0, −1 when STUN is disabled on this node. */
  readonly stunPort: number;
  /** The node only answers STUN; it is never dialled for DERP. */
  readonly stunOnly: boolean;
  /** DERP port after applying the scheme's default. */
  readonly derpPort: number;
  /** `https` unless InsecureForTests or an explicit http scheme was given. */
  readonly scheme: 'http' | 'https';
  /** Skip TLS certificate verification (https) or use plain http (no explicit scheme). */
  readonly insecureForTests: boolean;
  /** Test-only STUN address override (tailcfg STUNTestIP). */
  readonly stunTestIp: string | undefined;
  /** Reachable on port 80 for captive-portal checks. */
  readonly canPort80: boolean;
}

/** A geographic region: a set of nodes that relay among themselves. */
export interface DerpRegion {
  readonly regionId: number;
  /** Short code, e.g. "nyc"; defaults to the ID as text. */
  readonly regionCode: string;
  /** Long name, e.g. "New York City"; defaults to the code. */
  readonly regionName: string;
  /** Never measured and never chosen as home; dialled only to reach a peer whose home it is. */
  readonly noMeasureNoHome: boolean;
  /** Nodes in priority order (DERP dials the first non-STUN-only node first; STUN probes rotate over them). */
  readonly nodes: readonly DerpNode[];
}

/** A validated DERP map. */
export interface DerpMap {
  /** Regions keyed by ID. */
  readonly regions: ReadonlyMap<number, DerpRegion>;
  /** HomeParams.RegionScore: latency multipliers (below 1 prefers a region). Non-positive scores are ignored. */
  readonly regionScore: ReadonlyMap<number, number>;
}

/** Friendly input form of a node (camelCase). Tailscale's PascalCase names are accepted too. */
export interface DerpNodeInput {
  name?: string;
  regionId?: number;
  hostName?: string;
  /** `http(s)://host[:port]` sets scheme, hostName and derpPort at once. */
  url?: string;
  scheme?: 'http' | 'https';
  certName?: string;
  ipv4?: string;
  ipv6?: string;
  stunPort?: number;
  stunOnly?: boolean;
  derpPort?: number;
  canPort80?: boolean;
  insecureForTests?: boolean;
  stunTestIp?: string;
}

/** Friendly input form of a region. */
export interface DerpRegionInput {
  regionId?: number;
  regionCode?: string;
  regionName?: string;
  noMeasureNoHome?: boolean;
  nodes: DerpNodeInput[];
}

/** Friendly input form of a map: `regions` keyed by ID or as an array. */
export interface DerpMapInput {
  regions: Record<string, DerpRegionInput> | DerpRegionInput[];
  homeParams?: { regionScore?: Record<string, number> };
}

function bad(msg: string): MeshsockError {
  return new MeshsockError(ErrorCode.BAD_CONFIG, `DERP map: ${msg}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Case-insensitive field lookup, as Go's encoding/json matches struct fields. */
function field(obj: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) {
    const want = n.toLowerCase();
    for (const k of Object.keys(obj)) if (k.toLowerCase() === want) return obj[k];
  }
  return undefined;
}

function str(obj: Record<string, unknown>, where: string, ...names: string[]): string | undefined {
  const v = field(obj, ...names);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw bad(`${where}: ${names[0]} must be a string, got ${JSON.stringify(v)}`);
  return v;
}

function bool(obj: Record<string, unknown>, where: string, ...names: string[]): boolean {
  const v = field(obj, ...names);
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw bad(`${where}: ${names[0]} must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

function int(
  obj: Record<string, unknown>,
  where: string,
  min: number,
  max: number,
  ...names: string[]
): number | undefined {
  const v = field(obj, ...names);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw bad(`${where}: ${names[0]} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}`);
  return v;
}

function regionIdOf(v: unknown, where: string): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0 || n > DERP_MAP.MAX_REGION_ID)
    throw bad(`${where}: region ID must be a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function ipField(obj: Record<string, unknown>, where: string, family: 4 | 6): string | undefined {
  const name = family === 4 ? 'IPv4' : 'IPv6';
  const v = str(obj, where, name);
  if (v === undefined || v === '') return undefined;
  if (v === 'none') return 'none';
  const ok = family === 4 ? parseIPv4(v) !== undefined : !v.includes('.') && parseIPv6(v) !== undefined;
  if (!ok) throw bad(`${where}: ${name} must be an IPv${family} literal or "none", got ${JSON.stringify(v)}`);
  return v;
}

function parseNode(raw: unknown, regionId: number, index: number): DerpNode {
  let where = `region ${regionId} node #${index}`;
  if (!isObject(raw)) throw bad(`${where}: must be an object`);
  const name = str(raw, where, 'Name') || `${regionId}${String.fromCharCode(97 + (index % 26))}`;
  where = `region ${regionId} node "${name}"`;
  const nodeRegion = field(raw, 'RegionID');
  if (nodeRegion !== undefined && nodeRegion !== null && nodeRegion !== 0) {
    if (regionIdOf(nodeRegion, where) !== regionId)
      throw bad(`${where}: RegionID ${JSON.stringify(nodeRegion)} does not match its region ${regionId}`);
  }
  let scheme: 'http' | 'https' | undefined;
  let hostName = str(raw, where, 'HostName');
  let urlPort: number | undefined;
  const url = str(raw, where, 'URL');
  if (url !== undefined) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw bad(`${where}: url ${JSON.stringify(url)} is not a URL`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw bad(`${where}: url ${JSON.stringify(url)} must start with http:// or https://`);
    if (hostName !== undefined && hostName !== '' && hostName !== u.hostname.replace(/^\[|\]$/g, ''))
      throw bad(`${where}: url host ${JSON.stringify(u.hostname)} contradicts HostName ${JSON.stringify(hostName)}`);
    scheme = u.protocol === 'http:' ? 'http' : 'https';
    hostName = u.hostname.replace(/^\[|\]$/g, '');
    if (u.port !== '') urlPort = Number(u.port);
  }
  const explicitScheme = str(raw, where, 'Scheme');
  if (explicitScheme !== undefined) {
    if (explicitScheme !== 'http' && explicitScheme !== 'https')
      throw bad(`${where}: scheme must be "http" or "https", got ${JSON.stringify(explicitScheme)}`);
    if (scheme !== undefined && scheme !== explicitScheme)
      throw bad(`${where}: scheme "${explicitScheme}" contradicts url ${JSON.stringify(url)}`);
    scheme = explicitScheme;
  }
  if (hostName === undefined || hostName === '') throw bad(`${where}: HostName is required`);
  const insecureForTests = bool(raw, where, 'InsecureForTests');
  scheme ??= insecureForTests ? 'http' : 'https';
  const derpPortField = int(raw, where, 0, 65535, 'DERPPort');
  if (urlPort !== undefined && derpPortField !== undefined && derpPortField !== 0 && derpPortField !== urlPort)
    throw bad(`${where}: url port ${urlPort} contradicts DERPPort ${derpPortField}`);
  const defaultPort = scheme === 'https' ? DERP_MAP.DEFAULT_HTTPS_PORT : DERP_MAP.DEFAULT_HTTP_PORT;
  const derpPort = urlPort ?? (derpPortField || defaultPort);
  const stunPortField = int(raw, where, -1, 65535, 'STUNPort') ?? 0;
  const stunTestIp = str(raw, where, 'STUNTestIP') || undefined;
  if (stunTestIp !== undefined && parseIPv4(stunTestIp) === undefined && parseIPv6(stunTestIp) === undefined)
    throw bad(`${where}: STUNTestIP must be an IP literal, got ${JSON.stringify(stunTestIp)}`);
  return {
    name,
    regionId,
    hostName,
    certName: str(raw, where, 'CertName') || undefined,
    ipv4: ipField(raw, where, 4),
    ipv6: ipField(raw, where, 6),
    stunPort: stunPortField === 0 ? DERP_MAP.DEFAULT_STUN_PORT : stunPortField,
    stunOnly: bool(raw, where, 'STUNOnly'),
    derpPort,
    scheme,
    insecureForTests,
    stunTestIp,
    canPort80: bool(raw, where, 'CanPort80'),
  };
}

function parseRegion(raw: unknown, keyId: number | undefined, index: number): DerpRegion {
  const where0 = keyId === undefined ? `region #${index}` : `region ${keyId}`;
  if (!isObject(raw)) throw bad(`${where0}: must be an object`);
  const idField = field(raw, 'RegionID');
  let regionId: number;
  if (idField === undefined || idField === null || idField === 0) {
    if (keyId === undefined) throw bad(`${where0}: RegionID is required`);
    regionId = keyId;
  } else {
    regionId = regionIdOf(idField, where0);
    if (keyId !== undefined && regionId !== keyId)
      throw bad(`region key "${keyId}" does not match its RegionID ${regionId}`);
  }
  const where = `region ${regionId}`;
  const regionCode = str(raw, where, 'RegionCode') || String(regionId);
  const regionName = str(raw, where, 'RegionName') || regionCode;
  const nodesRaw = field(raw, 'Nodes');
  if (!Array.isArray(nodesRaw) || nodesRaw.length === 0)
    throw bad(`${where} ("${regionCode}") has no nodes; give at least one node with a HostName`);
  const nodes = nodesRaw.map((n, i) => parseNode(n, regionId, i));
  return { regionId, regionCode, regionName, noMeasureNoHome: bool(raw, where, 'NoMeasureNoHome'), nodes };
}

/**
 * Parses and validates a DERP map given as JSON text or as an already-parsed object, in Tailscale's PascalCase
 * form or meshsock's camelCase form (see the module header).
 *
 * @throws MeshsockError BAD_CONFIG naming the region/node and field that is wrong.
 */
export function parseDerpMap(input: string | DerpMapInput | Record<string, unknown>): DerpMap {
  let obj: unknown = input;
  if (typeof input === 'string') {
    try {
      obj = JSON.parse(input);
    } catch (err) {
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `DERP map: not valid JSON (${(err as Error).message})`, {
        cause: err,
      });
    }
  }
  if (!isObject(obj)) throw bad('must be a JSON object with a "Regions" field');
  const regionsRaw = field(obj, 'Regions');
  const regions = new Map<number, DerpRegion>();
  const add = (r: DerpRegion): void => {
    if (regions.has(r.regionId)) throw bad(`region ${r.regionId} is listed twice`);
    regions.set(r.regionId, r);
  };
  if (Array.isArray(regionsRaw)) regionsRaw.forEach((r, i) => add(parseRegion(r, undefined, i)));
  else if (isObject(regionsRaw))
    Object.entries(regionsRaw).forEach(([k, r], i) => add(parseRegion(r, regionIdOf(k, `region key "${k}"`), i)));
  else throw bad('"Regions" is missing; it must map region IDs to regions (or be an array of regions)');
  if (regions.size === 0)
    throw bad('has no regions; meshsock has no built-in DERP servers, so give at least one region');
  const names = new Map<string, number>();
  for (const r of regions.values())
    for (const n of r.nodes) {
      const prev = names.get(n.name);
      if (prev !== undefined) throw bad(`node name "${n.name}" is used in region ${prev} and region ${r.regionId}`);
      names.set(n.name, r.regionId);
    }
  const sorted = new Map([...regions.entries()].sort((a, b) => a[0] - b[0]));
  const regionScore = new Map<number, number>();
  const hp = field(obj, 'HomeParams');
  if (hp !== undefined && hp !== null) {
    if (!isObject(hp)) throw bad('HomeParams must be an object');
    const rs = field(hp, 'RegionScore');
    if (rs !== undefined && rs !== null) {
      if (!isObject(rs)) throw bad('HomeParams.RegionScore must map region IDs to numbers');
      for (const [k, v] of Object.entries(rs)) {
        const id = regionIdOf(k, `HomeParams.RegionScore key "${k}"`);
        if (typeof v !== 'number' || !Number.isFinite(v))
          throw bad(`HomeParams.RegionScore["${k}"] must be a number, got ${JSON.stringify(v)}`);
        if (v > 0) regionScore.set(id, v);
      }
    }
  }
  return { regions: sorted, regionScore };
}

/** True when `v` parses as a DERP map (never throws). */
export function isDerpMap(v: unknown): boolean {
  try {
    parseDerpMap(v as Record<string, unknown>);
    return true;
  } catch {
    return false;
  }
}

/** Region IDs in ascending order. */
export function regionIds(map: DerpMap): number[] {
  return [...map.regions.keys()];
}

/** The region, or a BAD_CONFIG error naming the unknown ID. */
export function getRegion(map: DerpMap, regionId: number): DerpRegion {
  const r = map.regions.get(regionId);
  if (!r) throw new MeshsockError(ErrorCode.BAD_CONFIG, `DERP map has no region ${regionId}`);
  return r;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** Base URL of a node (`scheme://host[:port]`), without a path. The port is omitted when it is the scheme default. */
export function derpNodeBaseUrl(node: DerpNode): string {
  const std = node.scheme === 'https' ? 443 : 80;
  const port = node.derpPort === std ? '' : `:${node.derpPort}`;
  return `${node.scheme}://${hostForUrl(node.hostName)}${port}`;
}

/** The DERP upgrade URL of a node: `https://host[:port]/derp` or `http://host:port/derp`. */
export function derpNodeUrl(node: DerpNode): string {
  return `${derpNodeBaseUrl(node)}/derp`;
}

/** The latency-check URL used by netcheck when UDP is blocked (`/derp/latency-check`). */
export function derpNodeLatencyUrl(node: DerpNode): string {
  return `${derpNodeBaseUrl(node)}/derp/latency-check`;
}

/** Nodes of a region that serve DERP (not STUN-only), in dial order. */
export function derpNodes(region: DerpRegion): DerpNode[] {
  return region.nodes.filter((n) => !n.stunOnly);
}

/** Whether the node may be reached over the family: no `'none'` and, for a literal, the right family. */
export function nodeMightFamily(node: DerpNode, family: 4 | 6): boolean {
  const lit = family === 4 ? node.ipv4 : node.ipv6;
  if (lit === 'none') return false;
  if (lit !== undefined) return true;
  const testIp = node.stunTestIp;
  if (testIp !== undefined) return family === 4 ? parseIPv4(testIp) !== undefined : testIp.includes(':');
  if (parseIPv4(node.hostName)) return family === 4;
  if (node.hostName.includes(':')) return family === 6;
  return true;
}

/** The IP literal to use for the family without DNS, or undefined when DNS must resolve hostName. */
export function nodeLiteralAddress(node: DerpNode, family: 4 | 6): string | undefined {
  if (node.stunTestIp !== undefined) return nodeMightFamily(node, family) ? node.stunTestIp : undefined;
  const lit = family === 4 ? node.ipv4 : node.ipv6;
  if (lit !== undefined && lit !== 'none') return lit;
  if (family === 4 && parseIPv4(node.hostName)) return node.hostName;
  if (family === 6 && node.hostName.includes(':')) return node.hostName;
  return undefined;
}

/**
 * Serialises to Tailscale's JSON form (PascalCase), so a map built here can be fed to Tailscale tools and parsed
 * back unchanged. A non-default scheme is kept in an extra `Scheme` field, which Tailscale ignores.
 */
export function derpMapToTailscaleJson(map: DerpMap): Record<string, unknown> {
  const regions: Record<string, unknown> = {};
  for (const r of map.regions.values()) {
    regions[String(r.regionId)] = {
      RegionID: r.regionId,
      RegionCode: r.regionCode,
      RegionName: r.regionName,
      ...(r.noMeasureNoHome ? { NoMeasureNoHome: true } : {}),
      Nodes: r.nodes.map((n) => ({
        Name: n.name,
        RegionID: n.regionId,
        HostName: n.hostName,
        ...(n.certName ? { CertName: n.certName } : {}),
        ...(n.ipv4 ? { IPv4: n.ipv4 } : {}),
        ...(n.ipv6 ? { IPv6: n.ipv6 } : {}),
        ...(n.stunPort !== DERP_MAP.DEFAULT_STUN_PORT ? { STUNPort: n.stunPort } : {}),
        ...(n.stunOnly ? { STUNOnly: true } : {}),
        ...(n.derpPort !== (n.scheme === 'https' ? DERP_MAP.DEFAULT_HTTPS_PORT : DERP_MAP.DEFAULT_HTTP_PORT)
          ? { DERPPort: n.derpPort }
          : {}),
        ...(n.insecureForTests ? { InsecureForTests: true } : {}),
        // Not a Tailscale field (Go ignores it): keeps the scheme when it differs from the InsecureForTests default.
        ...(n.scheme !== (n.insecureForTests ? 'http' : 'https') ? { Scheme: n.scheme } : {}),
        ...(n.stunTestIp ? { STUNTestIP: n.stunTestIp } : {}),
        ...(n.canPort80 ? { CanPort80: true } : {}),
      })),
    };
  }
  const out: Record<string, unknown> = { Regions: regions };
  if (map.regionScore.size > 0)
    out['HomeParams'] = { RegionScore: Object.fromEntries([...map.regionScore].map(([k, v]) => [String(k), v])) };
  return out;
}
