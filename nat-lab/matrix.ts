/**
 * The matrix harness: for every ordered pair of profiles, build a two-peer lab, start a DERP server (or the
 * stand-in relay) in the internet namespace, run the peer program on both hosts, read its JSON lines, and compare
 * the outcome with the expected one (`direct`, or `derp` with the reason).
 *
 * Peer program contract (nat-lab/README.md has the full text): the harness starts
 *   <peer argv…> --key <64 hex private key> --peer <64 hex peer public key> --stun <ip:port> --stun <ip:port>
 *                --derp <url> --duration-ms <n> --name <host>
 * in each host namespace, at the same moment, and reads stdout lines:
 *   {"event":"first-datagram","ms":N,"via":"derp"|"direct"}   first application datagram from the peer
 *   {"event":"path","type":"direct"|"derp","ms":N,"addr"?}     whenever the path to the peer changes
 *   {"event":"done","ms":N}                                    before exiting (exit status 0)
 * (any other lines are kept for the report). `ms` counts from the program's start.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PrivateKey } from '../src/key/index.js';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { toHex } from '../src/internal/bytes.js';
import { createPairLab, type Lab } from './topology.js';
import type { LabProcess } from './process.js';
import { PROFILE_NAMES, parseProfile, formatProfile, type ProfileName } from './profiles.js';
import { getMeshsockPrograms, getNodeTools } from './build-tools.js';
import { PLAN } from './plan.js';
import { sleep } from './exec.js';
import { matrixHtml, matrixMarkdown } from './matrix-report.js';

export type PathType = 'direct' | 'derp';
export type Outcome = PathType | 'broken';

export interface Expectation {
  path: PathType;
  reason: string;
}

/** What a peer program does beyond simultaneous punching; the expectation of some cells depends on it. */
export interface PeerCapabilities {
  /** Asks the NAT for a port mapping (NAT-PMP / PCP / UPnP) when one is offered. */
  portMapping: boolean;
}

/** The stand-in peer maps a port with NAT-PMP (the default expectation). */
export const STAND_IN_PEER_CAPS: PeerCapabilities = { portMapping: true };

/**
 * meshsock's MagicSocket (nat-lab/peer.ts): it asks the gateway for a mapping with NAT-PMP, PCP or UPnP-IGD
 * (src/portmap), so its expectations are the stand-in's. A peer without port mapping (`{ portMapping: false }`)
 * is expected to relay portmap × hard, as through any address-and-port-filtering NAT.
 */
export const MESHSOCK_PEER_CAPS: PeerCapabilities = { portMapping: true };

/** The program run on each host. Its argv gets the contract's arguments appended. */
export interface PeerProgram {
  argv: string[];
  /** Extra arguments appended after the contract's. */
  extraArgs?: string[];
  /** What it can do (default STAND_IN_PEER_CAPS); used for the default expectations. */
  caps?: PeerCapabilities;
  /** Name in reports (default: argv). */
  label?: string;
}

/**
 * The DERP server (or relay) run in the internet namespace. `{ip}` and `{port}` in argv are replaced by the DERP
 * slot (203.0.113.10, 80); `url` likewise (default `http://{ip}:{port}/derp`); `ready` matches its readiness line
 * (default /ready|listening|serving/i, which fits the stand-in relay and `meshsock derp`).
 */
export interface DerpProgram {
  argv: string[];
  /** Name in reports (default: argv). */
  label?: string;
  url?: string;
  ready?: RegExp;
}

export interface MatrixOptions {
  /** Profiles whose ordered pairs make the matrix (default: every profile except same-lan). */
  profiles?: string[];
  /** Explicit cells instead of all pairs; a same-lan cell is `['same-lan', 'same-lan']`. */
  cells?: Array<[string, string]>;
  /** Add the same-lan cells (`same-lan` and `same-lan+hairpin`) when `cells` is not given (default true). */
  sameLan?: boolean;
  /** Peer program (default: the stand-in peer). */
  peer?: PeerProgram;
  /** DERP server (default: the stand-in relay); `null` runs without one. */
  derp?: DerpProgram | null;
  /** How long each peer runs, ms (default 6000); DERP cells always take this long. */
  windowMs?: number;
  /** A `direct` cell fails when time to direct exceeds this, ms (default windowMs). */
  directDeadlineMs?: number;
  /** Cells run at once (default 2). */
  parallel?: number;
  /** Link preset for both sites. */
  link?: string;
  /** Expected outcome override. */
  expect?: (a: string, b: string) => Expectation;
  /** Called after each cell. */
  onCell?: (r: CellResult) => void;
}

export interface PeerEvent {
  event: string;
  ms?: number;
  [k: string]: unknown;
}

export interface PeerRun {
  host: string;
  events: PeerEvent[];
  exitCode: number | null;
  stderrTail: string;
}

export interface CellResult {
  a: string;
  b: string;
  expected: Expectation;
  outcome: Outcome;
  pass: boolean;
  /** Why it failed, when it did. */
  failure?: string;
  /** Later of the two peers' first datagram, ms. */
  firstDatagramMs: number | null;
  /** Later of the two peers' first direct path, ms (when both went direct). */
  directMs: number | null;
  peers: PeerRun[];
  labPrefix: string;
  buildMs: number;
  runMs: number;
}

export interface MatrixReport {
  startedAt: string;
  finishedAt: string;
  peer: string;
  derp: string;
  windowMs: number;
  link: string | null;
  profiles: string[];
  cells: CellResult[];
  passed: number;
  failed: number;
}

type Side = { udp: boolean; mapping: 'none' | 'EIM' | 'EDM'; filtering: 'EIF' | 'ADF' | 'APDF' };

function side(profile: string, caps: PeerCapabilities): Side {
  const p = parseProfile(profile);
  switch (p.name) {
    case 'open':
      return { udp: true, mapping: 'none', filtering: 'EIF' };
    case 'udp-blocked':
      return { udp: false, mapping: 'EIM', filtering: 'APDF' };
    case 'hard':
      return { udp: true, mapping: 'EDM', filtering: 'APDF' };
    case 'easy-af':
      return { udp: true, mapping: 'EIM', filtering: 'ADF' };
    case 'full-cone':
      return { udp: true, mapping: 'EIM', filtering: 'EIF' };
    case 'portmap': // a NAT-PMP/PCP/UPnP mapping accepts any sender; without one it is an easy NAT
      return { udp: true, mapping: 'EIM', filtering: caps.portMapping ? 'EIF' : 'APDF' };
    default: // easy, cgnat, same-lan: EIM + APDF
      return { udp: true, mapping: 'EIM', filtering: 'APDF' };
  }
}

/**
 * The expected outcome of a cell for a peer that punches simultaneously, answers pings at their source address and
 * (with `caps.portMapping`, the default) uses port mapping when offered — what Tailscale's magicsock does. DERP
 * cells carry the reason.
 */
export function expectedOutcome(a: string, b: string, caps: PeerCapabilities = STAND_IN_PEER_CAPS): Expectation {
  const pa = parseProfile(a);
  const pb = parseProfile(b);
  if (pa.name === 'same-lan' || pb.name === 'same-lan')
    return { path: 'direct', reason: 'both peers on one LAN: their LAN addresses work' };
  const A = side(a, caps);
  const B = side(b, caps);
  if (!A.udp || !B.udp) {
    const who = !A.udp && !B.udp ? 'both sites' : `${!A.udp ? a : b}'s site`;
    return { path: 'derp', reason: `UDP blocked at ${who}: only TCP 80/443 (DERP over HTTP) leaves` };
  }
  if (A.mapping === 'EDM' && B.mapping === 'EDM')
    return {
      path: 'derp',
      reason: 'both NATs map per destination (hard × hard): neither port can be predicted without port guessing',
    };
  for (const [x, y, nx, ny] of [[A, B, a, b] as const, [B, A, b, a] as const]) {
    if (x.mapping === 'EDM' && y.filtering === 'APDF') {
      const noPortmap =
        parseProfile(ny).name === 'portmap'
          ? ` (${ny}'s router offers NAT-PMP/PCP/UPnP, but this peer program does not ask for a mapping)`
          : '';
      return {
        path: 'derp',
        reason: `${nx} maps per destination and ${ny} filters by address and port: ${nx}'s probes come from a port ${ny} never sent to${noPortmap}`,
      };
    }
  }
  return {
    path: 'direct',
    reason: 'at least one side is reachable at a predictable endpoint once the other has sent to it',
  };
}

/** The cells of a full matrix: every ordered pair of `profiles`, plus the same-lan cells. */
export function matrixCells(profiles: readonly string[], sameLan = true): Array<[string, string]> {
  const list = profiles.map((p) => formatProfile(parseProfile(p)));
  const cells: Array<[string, string]> = [];
  for (const a of list) for (const b of list) cells.push([a, b]);
  if (sameLan) cells.push(['same-lan', 'same-lan'], ['same-lan+hairpin', 'same-lan+hairpin']);
  return cells;
}

/** The profiles of a default matrix (same-lan is a cell of its own, not a row). */
export const MATRIX_PROFILES: readonly ProfileName[] = PROFILE_NAMES.filter((p) => p !== 'same-lan');

function expectationFor(a: string, b: string, opts: MatrixOptions): Expectation {
  return opts.expect ? opts.expect(a, b) : expectedOutcome(a, b, opts.peer?.caps);
}

/**
 * The real peer program (nat-lab/peer.ts: a MagicSocket) — from dist/ when it is fresh, else transpiled into the
 * cache (build-tools.ts). Its STUN also asks the DERP server's STUN port, as Tailscale clients do.
 */
export async function meshsockPeer(extraArgs: readonly string[] = []): Promise<PeerProgram> {
  const p = await getMeshsockPrograms();
  return {
    argv: p.peer,
    extraArgs: ['--derp-stun-port', String(PLAN.stunPort), ...extraArgs],
    caps: MESHSOCK_PEER_CAPS,
    label: `nat-lab/peer.ts (MagicSocket) ${['--derp-stun-port', String(PLAN.stunPort), ...extraArgs].join(' ')}`,
  };
}

/** The real DERP server, `meshsock derp`, at the DERP slot with its STUN server on the same address. */
export async function meshsockDerp(extraArgs: readonly string[] = []): Promise<DerpProgram> {
  const p = await getMeshsockPrograms();
  return {
    argv: [...p.meshsock, 'derp', '--listen', '{ip}:{port}', '--stun-port', String(PLAN.stunPort), ...extraArgs],
    ready: /meshsock derp: serving/,
    label: `meshsock derp --listen {ip}:{port} --stun-port ${PLAN.stunPort}${extraArgs.length ? ` ${extraArgs.join(' ')}` : ''}`,
  };
}

/** Runs one cell: build, start DERP, run both peers, judge, tear down. */
export async function runCell(a: string, b: string, opts: MatrixOptions = {}): Promise<CellResult> {
  const expected = expectationFor(a, b, opts);
  const windowMs = opts.windowMs ?? 6000;
  const t0 = Date.now();
  const { lab, peers } = await createPairLab(a, b, opts.link ? { link: opts.link } : {});
  const buildMs = Date.now() - t0;
  try {
    const runs = await runPeers(lab, peers, opts, windowMs);
    return judge(
      a,
      b,
      expected,
      runs,
      lab.prefix,
      buildMs,
      Date.now() - t0 - buildMs,
      opts.directDeadlineMs ?? windowMs,
    );
  } finally {
    await lab.close();
  }
}

async function runPeers(lab: Lab, hosts: [string, string], opts: MatrixOptions, windowMs: number): Promise<PeerRun[]> {
  const tools = await getNodeTools();
  const fill = (s: string): string => fillDerpSlot(lab, s);
  let derpUrl = fill('http://{ip}:{port}/derp');
  if (opts.derp !== null) {
    const derp = opts.derp ?? { argv: [...tools.standInRelay, '--listen', '{ip}:{port}'], ready: /"event":"ready"/ };
    if (derp.url) derpUrl = fill(derp.url);
    const p = lab.startDerp(derp.argv.map(fill));
    await p.waitForLine(derp.ready ?? /ready|listening|serving/i, 15_000);
  }
  const peer = opts.peer ?? { argv: tools.standInPeer };
  const procs = spawnPeerPair(lab, hosts, peer, derpUrl, ['--duration-ms', String(windowMs)]);
  // Stop early once both peers are direct and have exchanged data; otherwise wait for them to finish.
  const deadline = Date.now() + windowMs + 10_000;
  let bothDirectAt: number | undefined;
  while (Date.now() < deadline && procs.some((p) => p.running())) {
    const direct = procs.every((p) => {
      const ev = p.json();
      const last = ev.filter((e) => e.event === 'path').at(-1);
      return last?.type === 'direct' && ev.some((e) => e.event === 'first-datagram');
    });
    if (direct) {
      bothDirectAt ??= Date.now();
      if (Date.now() - bothDirectAt > 500) break;
    }
    await sleep(50);
  }
  await Promise.all(procs.map((p) => p.kill()));
  const exits = await Promise.all(procs.map((p) => p.exited));
  return procs.map((p, i) => ({
    host: hosts[i]!,
    events: p.json() as PeerEvent[],
    exitCode: exits[i]?.code ?? null,
    stderrTail: p.stderrLines.slice(-5).join(' | '),
  }));
}

function judge(
  a: string,
  b: string,
  expected: Expectation,
  runs: PeerRun[],
  labPrefix: string,
  buildMs: number,
  runMs: number,
  directDeadlineMs: number,
): CellResult {
  const first = runs.map((r) => r.events.find((e) => e.event === 'first-datagram')?.ms);
  const lastPath = runs.map((r) => r.events.filter((e) => e.event === 'path').at(-1)?.type);
  const firstDirect = runs.map((r) => r.events.find((e) => e.event === 'path' && e.type === 'direct')?.ms);
  let outcome: Outcome;
  if (first.some((f) => typeof f !== 'number')) outcome = 'broken';
  else if (lastPath.every((p) => p === 'direct')) outcome = 'direct';
  else outcome = 'derp';
  const firstDatagramMs = first.every((f) => typeof f === 'number') ? Math.max(...(first as number[])) : null;
  const directMs =
    outcome === 'direct' && firstDirect.every((f) => typeof f === 'number')
      ? Math.max(...(firstDirect as number[]))
      : null;
  let failure: string | undefined;
  if (outcome === 'broken') {
    const who = runs.filter((_, i) => typeof first[i] !== 'number').map((r) => r.host);
    const err = runs.flatMap((r) =>
      r.events.filter((e) => e.event === 'error').map((e) => `${r.host}: ${String(e.message)}`),
    );
    failure = `no datagram reached ${who.join(' and ')}${err.length ? ` (${err.join('; ')})` : ''}`;
  } else if (outcome !== expected.path) failure = `expected ${expected.path}, got ${outcome}`;
  else if (outcome === 'direct' && directMs !== null && directMs > directDeadlineMs)
    failure = `direct after ${directMs} ms, over the ${directDeadlineMs} ms limit`;
  return {
    a,
    b,
    expected,
    outcome,
    pass: failure === undefined,
    ...(failure ? { failure } : {}),
    firstDatagramMs,
    directMs,
    peers: runs,
    labPrefix,
    buildMs,
    runMs,
  };
}

/** Runs every cell (see MatrixOptions) and returns the report; a cell that throws becomes a failed `broken` cell. */
export async function runMatrix(opts: MatrixOptions = {}): Promise<MatrixReport> {
  const startedAt = new Date().toISOString();
  const profiles = (opts.profiles ?? [...MATRIX_PROFILES]).map((p) => formatProfile(parseProfile(p)));
  const cells = opts.cells ?? matrixCells(profiles, opts.sameLan ?? true);
  for (const [a, b] of cells) {
    parseProfile(a);
    parseProfile(b);
  }
  const results: Array<CellResult | undefined> = new Array(cells.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < cells.length) {
      const i = next++;
      const [a, b] = cells[i]!;
      let r: CellResult;
      try {
        r = await runCell(a, b, opts);
      } catch (e) {
        r = {
          a,
          b,
          expected: expectationFor(a, b, opts),
          outcome: 'broken',
          pass: false,
          failure: `harness error: ${e instanceof Error ? e.message : String(e)}`,
          firstDatagramMs: null,
          directMs: null,
          peers: [],
          labPrefix: '',
          buildMs: 0,
          runMs: 0,
        };
      }
      results[i] = r;
      opts.onCell?.(r);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.parallel ?? 2, cells.length)) }, worker));
  const done = results.filter((r): r is CellResult => r !== undefined);
  return {
    startedAt,
    finishedAt: new Date().toISOString(),
    peer: opts.peer?.label ?? (opts.peer?.argv ?? ['stand-in-peer']).join(' '),
    derp: opts.derp === null ? 'none' : (opts.derp?.label ?? (opts.derp?.argv ?? ['stand-in-relay']).join(' ')),
    windowMs: opts.windowMs ?? 6000,
    link: opts.link ?? null,
    profiles: [...new Set(cells.flatMap(([a, b]) => [a, b]))],
    cells: done,
    passed: done.filter((r) => r.pass).length,
    failed: done.filter((r) => !r.pass).length,
  };
}

/** Writes matrix.md, matrix.html and matrix.json into `dir`; returns their paths. */
export function writeMatrixReports(report: MatrixReport, dir: string): { md: string; html: string; json: string } {
  if (!dir) throw new MeshsockError(ErrorCode.BAD_CONFIG, 'an output directory is required');
  mkdirSync(dir, { recursive: true });
  const md = join(dir, 'matrix.md');
  const html = join(dir, 'matrix.html');
  const json = join(dir, 'matrix.json');
  writeFileSync(md, matrixMarkdown(report));
  writeFileSync(html, matrixHtml(report));
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  return { md, html, json };
}

/** Replaces `{ip}` and `{port}` with the lab's DERP slot (203.0.113.10:80). */
export function fillDerpSlot(lab: Lab, s: string): string {
  const slot = lab.state.derp;
  return s.replaceAll('{ip}', slot.ip).replaceAll('{port}', String(slot.port));
}

/**
 * Starts the peer program on two hosts with fresh keys, pointed at each other, the lab's two STUN addresses and
 * `derpUrl` (the peer program contract, nat-lab/README.md); `extra` goes before the program's own extra arguments.
 */
export function spawnPeerPair(
  lab: Lab,
  hosts: readonly [string, string],
  peer: PeerProgram,
  derpUrl: string,
  extra: readonly string[],
): LabProcess[] {
  const keys = [PrivateKey.generate(), PrivateKey.generate()] as const;
  const st = lab.state.stun;
  return hosts.map((host, i) =>
    lab.spawn(
      host,
      [
        ...peer.argv,
        '--key',
        toHex(keys[i]!.bytes),
        '--peer',
        keys[1 - i]!.publicKey.hex,
        '--stun',
        `${st.primary}:${st.port}`,
        '--stun',
        `${st.secondary}:${st.port}`,
        '--derp',
        derpUrl,
        ...extra,
        '--name',
        host,
        ...(peer.extraArgs ?? []),
      ],
      { name: `peer-${host}` },
    ),
  );
}
