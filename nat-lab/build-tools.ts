/**
 * Locating (and when needed building) the programs nat-lab runs inside namespaces.
 *
 * - Node tools (nat-lab/tools/*.ts: probe, stand-in peer and relay). When nat-lab runs compiled (dist/), they are
 *   the compiled siblings in dist/nat-lab/tools/. When it runs from TypeScript source (vitest, tsx), the tool
 *   sources are transpiled once with the project's `typescript` into a content-addressed cache directory, so a
 *   stale dist/ can never be used by mistake. Tools import only node: modules and each other.
 * - The meshsock programs (nat-lab/peer.ts, the real peer; src/cli/main.ts, whose `derp` command is the real DERP
 *   server): dist/nat-lab/peer.js and dist/src/cli/main.js when dist/ is newer than every source (`npm test`
 *   builds first); otherwise src/ and nat-lab/peer.ts are emitted without a type check (the tree is
 *   `isolatedModules`) into a content-addressed cache directory with a node_modules link back to the checkout.
 *   Either way the programs start 3× faster than under `--import tsx`, and a stale dist/ is never used.
 * - The delay line (nat-lab/tools/delay-line.c) is compiled with gcc into the same cache, keyed by a hash of its
 *   source, the first time a lab needs it.
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { RUN_ROOT } from './plan.js';
import { have, run } from './exec.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const COMPILED = import.meta.url.endsWith('.js');
/** Where transpiled tools and the compiled delay line are cached. */
export const CACHE_DIR = join(RUN_ROOT, 'cache');

/** argv prefixes for the Node tools. */
export interface NodeTools {
  probe: string[];
  standInPeer: string[];
  standInRelay: string[];
}

/** argv prefixes for the real meshsock programs. */
export interface MeshsockPrograms {
  /** The peer program (nat-lab/peer.ts): contract in nat-lab/README.md. */
  peer: string[];
  /** `meshsock` (src/cli/main.ts): append `derp --listen IP:PORT …` for the DERP server. */
  meshsock: string[];
}

let nodeTools: Promise<NodeTools> | undefined;
let meshsockPrograms: Promise<MeshsockPrograms> | undefined;
let delayLine: Promise<string> | undefined;

/** The Node tools as argv prefixes (`[node, path]`), transpiling them first when running from source. */
export function getNodeTools(): Promise<NodeTools> {
  nodeTools ??= locateNodeTools();
  return nodeTools;
}

async function locateNodeTools(): Promise<NodeTools> {
  let dir = join(HERE, 'tools');
  if (!COMPILED) dir = await transpileTools(dir);
  if (!existsSync(join(dir, 'probe.js')))
    throw new MeshsockError(ErrorCode.COMMAND, `nat-lab tools are missing in ${dir} (run \`npm run build\`)`);
  const tool = (name: string): string[] => [process.execPath, join(dir, `${name}.js`)];
  return { probe: tool('probe'), standInPeer: tool('stand-in-peer'), standInRelay: tool('stand-in-relay') };
}

async function transpileTools(srcDir: string): Promise<string> {
  const files = readdirSync(srcDir)
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const h = createHash('sha256');
  for (const f of files)
    h.update(f)
      .update('\0')
      .update(readFileSync(join(srcDir, f)))
      .update('\0');
  const outDir = join(CACHE_DIR, `tools-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(join(outDir, 'package.json'))) return outDir;
  const mod = await import('typescript');
  const ts = (mod as unknown as { default?: typeof mod }).default ?? mod;
  const tmp = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  mkdirSync(tmp, { recursive: true });
  for (const f of files) {
    const out = ts.transpileModule(readFileSync(join(srcDir, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      fileName: f,
    });
    writeFileSync(join(tmp, f.replace(/\.ts$/, '.js')), out.outputText);
  }
  writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
  try {
    renameSync(tmp, outDir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race: use its copy
  }
  return outDir;
}

/** The real peer program and the `meshsock` CLI as argv prefixes (transpiled into the cache when run from source). */
export function getMeshsockPrograms(): Promise<MeshsockPrograms> {
  meshsockPrograms ??= locateMeshsock().catch((e: unknown) => {
    meshsockPrograms = undefined;
    throw e;
  });
  return meshsockPrograms;
}

async function locateMeshsock(): Promise<MeshsockPrograms> {
  // Compiled: HERE is dist/nat-lab, whose sibling is dist/src. From source: HERE is nat-lab/ — use dist/ when every
  // compiled file is newer than its source (`npm test` builds first), else a transpiled copy in the cache.
  const checkout = COMPILED ? join(HERE, '..', '..') : join(HERE, '..');
  let root = COMPILED ? join(HERE, '..') : join(checkout, 'dist');
  if (!COMPILED && !distIsFresh(checkout, root)) root = await transpileMeshsock(checkout);
  const peer = join(root, 'nat-lab', 'peer.js');
  const cli = join(root, 'src', 'cli', 'main.js');
  for (const f of [peer, cli])
    if (!existsSync(f)) throw new MeshsockError(ErrorCode.COMMAND, `${f} is missing (run \`npm run build\`)`);
  return { peer: [process.execPath, peer], meshsock: [process.execPath, cli] };
}

/** The sources the meshsock programs are built from: src/, nat-lab/peer.ts and the argument parser it shares. */
function meshsockSources(checkout: string): string[] {
  return [
    ...listTs(join(checkout, 'src')),
    join(checkout, 'nat-lab', 'peer.ts'),
    join(checkout, 'nat-lab', 'tools', 'peer-args.ts'),
  ];
}

function listTs(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** True when every source has a compiled counterpart in `dist` written after the source's last change. */
function distIsFresh(checkout: string, dist: string): boolean {
  try {
    return meshsockSources(checkout).every((f) => {
      const js = join(dist, relative(checkout, f)).replace(/\.ts$/, '.js');
      return statSync(js).mtimeMs >= statSync(f).mtimeMs;
    });
  } catch {
    return false;
  }
}

/**
 * Emits meshsockSources() (src/, nat-lab/peer.ts, its argument parser) as JavaScript (one program, no type check, no module resolution) into
 * CACHE_DIR/meshsock-<hash of the sources>/, with a node_modules link back to the checkout.
 */
async function transpileMeshsock(checkout: string): Promise<string> {
  const files = meshsockSources(checkout);
  const h = createHash('sha256');
  for (const f of files) h.update(relative(checkout, f)).update('\0').update(readFileSync(f)).update('\0');
  const outDir = join(CACHE_DIR, `meshsock-${h.digest('hex').slice(0, 16)}`);
  if (existsSync(join(outDir, 'package.json'))) {
    const now = new Date();
    utimesSync(outDir, now, now); // in use: not pruned
    return outDir;
  }
  const mod = await import('typescript');
  const ts = (mod as unknown as { default?: typeof mod }).default ?? mod;
  const tmp = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  const program = ts.createProgram(files, {
    module: ts.ModuleKind.ESNext,
    target: ts.ScriptTarget.ES2022,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    noCheck: true,
    noResolve: true,
    noLib: true,
    types: [],
    rootDir: checkout,
    outDir: tmp,
  });
  const emitted = program.emit();
  if (emitted.emitSkipped)
    throw new MeshsockError(ErrorCode.COMMAND, `transpiling meshsock for the lab failed (try \`npm run build\`)`);
  writeFileSync(join(tmp, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(checkout, 'node_modules'), join(tmp, 'node_modules'), 'dir');
  try {
    renameSync(tmp, outDir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // another process won the race: use its copy
  }
  pruneCache('meshsock-', outDir);
  return outDir;
}

/** Removes cached copies with this name prefix not used for a day (other runs may still be using recent ones). */
function pruneCache(prefix: string, keep: string): void {
  const dayAgo = Date.now() - 86_400_000;
  for (const f of readdirSync(CACHE_DIR)) {
    const p = join(CACHE_DIR, f);
    if (!f.startsWith(prefix) || p === keep) continue;
    try {
      if (statSync(p).mtimeMs < dayAgo) rmSync(p, { recursive: true, force: true });
    } catch {
      // raced with another run's pruning
    }
  }
}

/** Path of the compiled delay line, compiling it with gcc on first use. */
export function getDelayLine(): Promise<string> {
  delayLine ??= buildDelayLine().catch((e: unknown) => {
    delayLine = undefined;
    throw e;
  });
  return delayLine;
}

/** The delay line's C source (next to this file in source checkouts; ../../nat-lab/tools from dist/nat-lab). */
export function delayLineSource(): string {
  for (const p of [join(HERE, 'tools', 'delay-line.c'), join(HERE, '..', '..', 'nat-lab', 'tools', 'delay-line.c')]) {
    if (existsSync(p)) return p;
  }
  throw new MeshsockError(ErrorCode.COMMAND, 'nat-lab/tools/delay-line.c not found');
}

async function buildDelayLine(): Promise<string> {
  const src = delayLineSource();
  const hash = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 16);
  const bin = join(CACHE_DIR, `delay-line-${hash}`);
  if (existsSync(bin)) return bin;
  if (!have('gcc'))
    throw new MeshsockError(
      ErrorCode.COMMAND,
      'the delay line needs gcc (apt-get install gcc libc6-dev), or a kernel with sch_netem',
    );
  mkdirSync(CACHE_DIR, { recursive: true });
  const tmp = `${bin}.tmp-${process.pid}`;
  await run(['gcc', '-O2', '-Wall', '-o', tmp, src]);
  renameSync(tmp, bin);
  return bin;
}
