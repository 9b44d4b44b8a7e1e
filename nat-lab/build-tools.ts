/**
 * Locating (and when needed building) the programs nat-lab runs inside namespaces.
 *
 * - Node tools (nat-lab/tools/*.ts: probe, stand-in peer and relay). When nat-lab runs compiled (dist/), they are
 *   the compiled siblings in dist/nat-lab/tools/. When it runs from TypeScript source (vitest, tsx), the tool
 *   sources are transpiled once with the project's `typescript` into a content-addressed cache directory, so a
 *   stale dist/ can never be used by mistake. Tools import only node: modules and each other.
 * - The delay line (nat-lab/tools/delay-line.c) is compiled with gcc into the same cache, keyed by a hash of its
 *   source, the first time a lab needs it.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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

let nodeTools: Promise<NodeTools> | undefined;
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
