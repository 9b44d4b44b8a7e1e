#!/usr/bin/env node
/**
 * nat-lab command line (`npx nat-lab …`, or `node dist/nat-lab/cli.js …`). Every command has --help. Errors are
 * one line on stderr: exit 2 for bad arguments, 1 for anything that failed while running.
 */
import { spawn } from 'node:child_process';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { Lab, createPairLab } from './topology.js';
import { knownPrefixes, leftovers, teardownSync } from './cleanup.js';
import { existsSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { statePath } from './state.js';
import { FAULTS, runFault } from './faults.js';
import { PROFILES, PROFILE_NAMES, parseProfile } from './profiles.js';
import { LINK_PRESETS, LINK_PRESET_NAMES, describeLink, parseLink } from './link.js';
import { describeFailures, selfTest } from './selftest.js';
import {
  MATRIX_PROFILES,
  meshsockDerp,
  meshsockPeer,
  runMatrix,
  writeMatrixReports,
  type DerpProgram,
} from './matrix.js';
import { labSupport } from './env.js';
import { isPrefix, PREFIX_ENV } from './plan.js';

class UsageError extends Error {}

const out = (s = ''): void => void process.stdout.write(`${s}\n`);

const HELP: Record<string, string> = {
  main: `usage: nat-lab <command> [options]

commands:
  up PROFILE_A [PROFILE_B] [--link PRESET]   build a two-peer lab and keep it (state in /run/nat-lab/<prefix>.json)
  exec [--lab PREFIX] HOST -- CMD…            run a command inside a lab host (or router, inet)
  fault [--lab PREFIX] NAME [ARGS…]           inject a fault (nat-lab fault --help lists them)
  down [PREFIX | --all]                       tear a lab down (the only one when no prefix is given)
  list                                        labs that are up
  selftest [PROFILE…] [--link PRESET]         measure each profile from outside and compare with its promise
  matrix [options]                            run the peer program for every pair of profiles, write reports
  leftovers [PREFIX]                          list anything a lab left behind (exit 1 if something is)

profiles: ${PROFILE_NAMES.join(', ')} (add +hairpin to an EIM NAT for NAT loopback)
link presets: ${LINK_PRESET_NAMES.join(', ')}, or rtt=MS,jitter=MS,loss=PCT
Needs root. Run 'nat-lab <command> --help' for details.`,
  up: `usage: nat-lab up PROFILE_A [PROFILE_B] [--link PRESET] [--prefix PREFIX] [--json]

Builds sites a (PROFILE_A) and b (PROFILE_B) with peers a1 and b1 (same-lan: one site, peers a1 and a2), an
internet namespace with STUN on 203.0.113.1/.2:3478 and a free DERP slot at 203.0.113.10:80, prints the hosts and
their addresses, and leaves the lab running until 'nat-lab down'.

profiles:
${PROFILE_NAMES.map((p) => `  ${p.padEnd(12)} ${PROFILES[p].about}`).join('\n')}
link presets (added between each site and the internet):
${LINK_PRESET_NAMES.map((p) => `  ${p.padEnd(10)} ${describeLink(LINK_PRESETS[p])}`).join('\n')}`,
  exec: `usage: nat-lab exec [--lab PREFIX] NODE -- CMD [ARGS…]

Runs CMD inside NODE's namespace with this terminal (exit status passed through). NODE is a host (a1, b1), a router
(a-rtr, b-cgn) or inet. --lab is needed only when several labs are up.`,
  fault: `usage: nat-lab fault [--lab PREFIX] NAME [ARGS…]

faults:
${Object.entries(FAULTS)
  .map(([n, f]) => `  ${`${n} ${f.args}`.padEnd(36)} ${f.about}`)
  .join('\n')}`,
  down: `usage: nat-lab down [PREFIX | --all]

Kills every process in the lab's namespaces, deletes the namespaces (with their veths and nft tables) and its
state. Without arguments: the only lab that is up.`,
  list: 'usage: nat-lab list [--json]\n\nLists the labs that are up.',
  selftest: `usage: nat-lab selftest [PROFILE…] [--link PRESET] [--json]

Builds one site per profile (default: every profile, plus same-lan+hairpin) and measures mapping, filtering,
hairpin, TCP egress and port mapping from outside with the probe tool. Exit 1 when a profile misbehaves.`,
  matrix: `usage: nat-lab matrix [--profiles P,P,…] [--cells A:B,A:B,…] [--no-same-lan] [--peer CMD] [--derp CMD]
                      [--derp-url URL] [--window-ms N] [--direct-deadline-ms N] [--parallel N] [--link PRESET]
                      [--out DIR] [--json]

Runs the peer program on both hosts of a lab for every ordered pair of profiles (default: ${MATRIX_PROFILES.join(', ')},
plus the same-lan cells) and compares each cell with its expected outcome. --peer is the peer program's command
(default: the stand-in peer; "meshsock" = nat-lab/peer.ts, a MagicSocket); the contract is in nat-lab/README.md.
--derp is the DERP server's command, with {ip} and {port} replaced by the DERP slot (default: the stand-in relay;
"meshsock" = meshsock derp); --derp none runs without one.
Writes matrix.md, matrix.html and matrix.json to --out (default nat-lab/out/matrix-<time>). Exit 1 if a cell fails.`,
  leftovers:
    'usage: nat-lab leftovers [PREFIX]\n\nLists namespaces, processes, interfaces, nft tables and files left by labs; exit 1 if any.',
};

function help(cmd: string): void {
  out(HELP[cmd] ?? HELP.main);
}

function parse(_cmd: string, args: string[], options: NonNullable<ParseArgsConfig['options']>) {
  const r = parseArgs({
    args,
    options: { ...options, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
    strict: true,
  });
  return r as { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] };
}

function needSupport(): void {
  const s = labSupport();
  if (!s.ok) throw new MeshsockError(ErrorCode.COMMAND, s.reason);
}

function pickLab(flag: unknown): Lab {
  if (typeof flag === 'string') return Lab.attach(flag);
  const labs = knownPrefixes().filter((p) => existsSync(statePath(p)));
  if (labs.length === 0) throw new UsageError('no lab is up (start one with: nat-lab up PROFILE_A PROFILE_B)');
  if (labs.length > 1) throw new UsageError(`several labs are up (${labs.join(', ')}): pass --lab PREFIX`);
  return Lab.attach(labs[0]!);
}

function describe(lab: Lab): string[] {
  const s = lab.state;
  const L: string[] = [];
  const link = lab.sites.find((x) => x.link)?.link;
  L.push(
    `lab ${s.prefix}: ${lab.sites.map((x) => `${x.name}=${x.profile}`).join(' ')}${link ? ` · link ${describeLink(link)} via ${s.linkMechanism}` : ''}`,
  );
  L.push(
    `  inet     ns ${lab.ns('inet')}  STUN ${s.stun.primary}:${s.stun.port} ${s.stun.secondary}:${s.stun.port} (alt port ${s.stun.altPort}) · DERP slot ${s.derp.ip}:${s.derp.port}`,
  );
  for (const site of lab.sites) {
    const r = lab.router(site.router);
    L.push(
      `  site ${site.name}   ${site.profile.padEnd(16)} public ${site.publicIp}  router ${r.name} (ns ${r.ns})${site.carrier ? ` behind carrier ${site.carrier}` : ''}`,
    );
    for (const hn of site.hosts) {
      const h = lab.host(hn);
      L.push(
        `    host ${h.name.padEnd(4)} ${`${h.ip}/${h.prefixLen}`.padEnd(18)} gw ${h.gateway.padEnd(15)} ns ${h.ns}`,
      );
    }
  }
  L.push(`state: ${statePath(s.prefix)}`);
  return L;
}

async function cmdUp(args: string[]): Promise<number> {
  const { values, positionals } = parse('up', args, {
    link: { type: 'string' },
    prefix: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return (help('up'), 0);
  if (positionals.length < 1 || positionals.length > 2)
    throw new UsageError('up takes one or two profiles (nat-lab up --help)');
  for (const p of positionals) parseProfile(p);
  if (typeof values.link === 'string') parseLink(values.link);
  if (typeof values.prefix === 'string' && !isPrefix(values.prefix))
    throw new UsageError(`--prefix must be nl + 4 hex digits, got ${values.prefix}`);
  needSupport();
  const { lab } = await createPairLab(positionals[0]!, positionals[1], {
    persist: true,
    ...(typeof values.link === 'string' ? { link: values.link } : {}),
    ...(typeof values.prefix === 'string' ? { prefix: values.prefix } : {}),
  });
  if (values.json) out(JSON.stringify(lab.state, null, 2));
  else {
    for (const l of describe(lab)) out(l);
    const first = lab.hosts[0]!.name;
    out(`try:   nat-lab exec ${first} -- ip addr    ·    nat-lab down ${lab.prefix}`);
  }
  return 0;
}

async function cmdExec(args: string[]): Promise<number> {
  const dash = args.indexOf('--');
  const head = dash < 0 ? args : args.slice(0, dash);
  const cmd = dash < 0 ? [] : args.slice(dash + 1);
  const { values, positionals } = parse('exec', head, { lab: { type: 'string' } });
  if (values.help) return (help('exec'), 0);
  if (positionals.length !== 1)
    throw new UsageError('exec takes one NODE, then -- and the command (nat-lab exec --help)');
  if (cmd.length === 0) throw new UsageError('exec needs a command after -- (e.g. nat-lab exec a1 -- ip addr)');
  needSupport();
  const lab = pickLab(values.lab);
  const ns = lab.ns(positionals[0]!);
  return await new Promise<number>((resolve) => {
    const child = spawn('ip', ['netns', 'exec', ns, ...cmd], {
      stdio: 'inherit',
      env: { ...process.env, [PREFIX_ENV]: lab.prefix },
    });
    child.on('error', (e) => {
      process.stderr.write(`nat-lab: ${e.message}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + 9 : 1)));
  });
}

async function cmdFault(args: string[]): Promise<number> {
  const { values, positionals } = parse('fault', args, { lab: { type: 'string' } });
  if (values.help || positionals.length === 0) return (help('fault'), values.help ? 0 : 2);
  if (!Object.hasOwn(FAULTS, positionals[0]!))
    throw new UsageError(`unknown fault ${JSON.stringify(positionals[0])}; one of ${Object.keys(FAULTS).join(', ')}`);
  needSupport();
  const lab = pickLab(values.lab);
  out(await runFault(lab, positionals[0]!, positionals.slice(1)));
  return 0;
}

async function cmdDown(args: string[]): Promise<number> {
  const { values, positionals } = parse('down', args, { all: { type: 'boolean' } });
  if (values.help) return (help('down'), 0);
  if (positionals.length > 1 || (values.all && positionals.length > 0))
    throw new UsageError('down takes one PREFIX or --all');
  needSupport();
  let prefixes: string[];
  if (values.all) prefixes = knownPrefixes();
  else if (positionals[0] !== undefined) {
    if (!isPrefix(positionals[0])) throw new UsageError(`not a lab prefix: ${positionals[0]} (nl + 4 hex digits)`);
    prefixes = [positionals[0]];
  } else {
    const labs = knownPrefixes();
    if (labs.length === 0) throw new UsageError('no lab is up');
    if (labs.length > 1) throw new UsageError(`several labs are up (${labs.join(', ')}): pass a PREFIX or --all`);
    prefixes = labs;
  }
  for (const p of prefixes) {
    const removed = teardownSync(p);
    out(
      `${p}: ${removed.length === 0 ? 'nothing to remove' : `removed ${removed.filter((r) => r.startsWith('namespace')).length} namespaces, ${removed.filter((r) => r.startsWith('process')).length} processes`}`,
    );
  }
  return 0;
}

async function cmdList(args: string[]): Promise<number> {
  const { values } = parse('list', args, { json: { type: 'boolean' } });
  if (values.help) return (help('list'), 0);
  const labs = knownPrefixes().filter((p) => existsSync(statePath(p)));
  if (values.json) out(JSON.stringify(labs.map((p) => Lab.attach(p).state)));
  else if (labs.length === 0) out('no lab is up');
  else for (const p of labs) out(describe(Lab.attach(p))[0]);
  return 0;
}

async function cmdSelftest(args: string[]): Promise<number> {
  const { values, positionals } = parse('selftest', args, { link: { type: 'string' }, json: { type: 'boolean' } });
  if (values.help) return (help('selftest'), 0);
  const profiles = positionals.length > 0 ? positionals : [...PROFILE_NAMES, 'same-lan+hairpin'];
  for (const p of profiles) parseProfile(p);
  if (profiles.length > 15) throw new UsageError('at most 15 profiles per selftest run');
  if (typeof values.link === 'string') parseLink(values.link);
  needSupport();
  const res = await selfTest(profiles, typeof values.link === 'string' ? { link: values.link } : {});
  if (values.json) out(JSON.stringify(res, null, 2));
  else
    for (const r of res) {
      const m = r.measured;
      out(
        `${r.ok ? 'PASS' : 'FAIL'} ${r.profile.padEnd(18)} mapping ${String(m.mapping).padEnd(5)} filtering ${String(m.filtering).padEnd(5)} hairpin ${String(m.hairpin).padEnd(5)} public ${m.mappedIp ?? '-'}`,
      );
      for (const f of describeFailures(r)) out(`     ${f}`);
    }
  return res.every((r) => r.ok) ? 0 : 1;
}

function splitCmd(s: string): string[] {
  return s.split(/\s+/).filter((x) => x.length > 0);
}

async function cmdMatrix(args: string[]): Promise<number> {
  const { values } = parse('matrix', args, {
    profiles: { type: 'string' },
    cells: { type: 'string' },
    'no-same-lan': { type: 'boolean' },
    peer: { type: 'string' },
    derp: { type: 'string' },
    'derp-url': { type: 'string' },
    'window-ms': { type: 'string' },
    'direct-deadline-ms': { type: 'string' },
    parallel: { type: 'string' },
    link: { type: 'string' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return (help('matrix'), 0);
  const num = (k: string, min: number, max: number): number | undefined => {
    const v = values[k];
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new UsageError(`--${k} must be an integer ${min}..${max}, got ${String(v)}`);
    return n;
  };
  const profiles = typeof values.profiles === 'string' ? values.profiles.split(',') : undefined;
  profiles?.forEach((p) => parseProfile(p));
  const cells =
    typeof values.cells === 'string'
      ? values.cells.split(',').map((c) => {
          const [a, b] = c.split(':');
          if (!a || !b) throw new UsageError(`--cells entries are A:B, got ${c}`);
          parseProfile(a);
          parseProfile(b);
          return [a, b] as [string, string];
        })
      : undefined;
  if (typeof values.link === 'string') parseLink(values.link);
  let derp: DerpProgram | null | undefined;
  if (values.derp === 'none') derp = null;
  else if (typeof values.derp === 'string' && values.derp !== 'meshsock')
    derp = {
      argv: splitCmd(values.derp),
      ...(typeof values['derp-url'] === 'string' ? { url: values['derp-url'] } : {}),
    };
  const windowMs = num('window-ms', 500, 600_000);
  const deadline = num('direct-deadline-ms', 1, 600_000);
  const parallel = num('parallel', 1, 8);
  const outDir =
    typeof values.out === 'string'
      ? values.out
      : `nat-lab/out/matrix-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  needSupport();
  if (values.derp === 'meshsock') derp = await meshsockDerp();
  const report = await runMatrix({
    ...(profiles ? { profiles } : {}),
    ...(cells ? { cells } : {}),
    sameLan: values['no-same-lan'] !== true,
    ...(values.peer === 'meshsock'
      ? { peer: await meshsockPeer() }
      : typeof values.peer === 'string'
        ? { peer: { argv: splitCmd(values.peer) } }
        : {}),
    ...(derp !== undefined ? { derp } : {}),
    ...(windowMs ? { windowMs } : {}),
    ...(deadline ? { directDeadlineMs: deadline } : {}),
    ...(parallel ? { parallel } : {}),
    ...(typeof values.link === 'string' ? { link: values.link } : {}),
    onCell: (c) => {
      if (!values.json)
        out(
          `${c.pass ? 'ok  ' : 'FAIL'} ${`${c.a} × ${c.b}`.padEnd(34)} ${c.outcome.padEnd(6)} first ${c.firstDatagramMs ?? '-'} ms, direct ${c.directMs ?? '-'} ms${c.failure ? ` — ${c.failure}` : ''}`,
        );
    },
  });
  const files = writeMatrixReports(report, outDir);
  if (values.json) out(JSON.stringify(report, null, 2));
  else out(`${report.passed} passed, ${report.failed} failed · ${files.md} · ${files.html}`);
  return report.failed === 0 ? 0 : 1;
}

async function cmdLeftovers(args: string[]): Promise<number> {
  const { values, positionals } = parse('leftovers', args, {});
  if (values.help) return (help('leftovers'), 0);
  if (positionals.length > 1) throw new UsageError('leftovers takes at most one PREFIX');
  if (positionals[0] !== undefined && !isPrefix(positionals[0]))
    throw new UsageError(`not a lab prefix: ${positionals[0]}`);
  const l = leftovers(positionals[0]);
  for (const x of l) out(x);
  if (l.length === 0) out('clean');
  return l.length === 0 ? 0 : 1;
}

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  up: cmdUp,
  exec: cmdExec,
  fault: cmdFault,
  down: cmdDown,
  list: cmdList,
  selftest: cmdSelftest,
  matrix: cmdMatrix,
  leftovers: cmdLeftovers,
};

/** Runs the CLI with `argv` (without node and script); resolves with the exit status. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help')
      return (help('main'), cmd === undefined ? 2 : 0);
    const fn = COMMANDS[cmd];
    if (!fn)
      throw new UsageError(
        `unknown command ${JSON.stringify(cmd)}; one of ${Object.keys(COMMANDS).join(', ')} (nat-lab --help)`,
      );
    return await fn(rest);
  } catch (e) {
    const usage =
      e instanceof UsageError || (e as { code?: unknown }).code?.toString().startsWith('ERR_PARSE_ARGS') === true;
    const badConfig = e instanceof MeshsockError && e.code === ErrorCode.BAD_CONFIG;
    const msg = (e instanceof Error ? e.message : String(e)).split('\n')[0];
    process.stderr.write(`nat-lab: ${msg}\n`);
    return usage || badConfig ? 2 : 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

const isMain = invokedDirectly();
if (isMain) process.exitCode = await main(process.argv.slice(2));
