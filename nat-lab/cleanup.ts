/**
 * Teardown and leftover detection.
 *
 * Teardown works from the prefix alone, not from what a run remembers, so it also cleans up after a run that
 * crashed or was killed: it signals every process inside the run's namespaces (`ip netns pids`) and every process
 * whose environment carries NAT_LAB_PREFIX=<prefix> (a process can outlive its namespace's name), waits, SIGKILLs
 * what is left, deletes the namespaces (which destroys their veths, bridges and nft tables), removes any root
 * interface or nft table bearing the prefix (there should never be one), and deletes the run directory and state
 * file. It is synchronous so it can run from signal and `exit` handlers.
 *
 * Labs that are not `persist` register here; SIGINT, SIGTERM, SIGHUP and process exit tear them down.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { ANY_PREFIX_NS, PREFIX_ENV, RUN_ROOT, isPrefix } from './plan.js';
import { runSync, sleepSync } from './exec.js';
import { pidAlive } from './process.js';

/** Namespaces whose name starts with `<prefix>-` (any nat-lab prefix when omitted). */
export function labNamespaces(prefix?: string): string[] {
  const r = runSync(['ip', 'netns', 'list'], { check: false });
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => (prefix ? n.startsWith(`${prefix}-`) : ANY_PREFIX_NS.test(n)));
}

/** Pids of processes tagged with NAT_LAB_PREFIX (=prefix, or any when omitted), excluding this process. */
export function taggedPids(prefix?: string): number[] {
  const out: number[] = [];
  const needle = prefix ? `${PREFIX_ENV}=${prefix}\0` : `${PREFIX_ENV}=`;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    try {
      const env = readFileSync(`/proc/${d}/environ`, 'latin1');
      if (env.includes(needle) && pidAlive(pid)) out.push(pid);
    } catch {
      // process gone or not readable
    }
  }
  return out;
}

function nsPids(ns: string): number[] {
  const r = runSync(['ip', 'netns', 'pids', ns], { check: false });
  return r.stdout
    .split('\n')
    .filter((l) => /^\d+$/.test(l.trim()))
    .map((l) => Number(l.trim()))
    .filter((p) => p !== process.pid);
}

function rootLinks(prefix?: string): string[] {
  const r = runSync(['ip', '-o', 'link', 'show'], { check: false });
  const names = r.stdout.split('\n').map((l) => (/^\d+:\s+([^:@]+)/.exec(l)?.[1] ?? '').trim());
  return names.filter((n) => (prefix ? n.startsWith(prefix) : /^nl[0-9a-f]{4}-/.test(n)));
}

function rootNftTables(prefix?: string): string[] {
  const r = runSync(['nft', 'list', 'tables'], { check: false });
  return r.stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('table '))
    .map((l) => l.slice(6))
    .filter((t) => {
      const name = t.split(' ').pop() ?? '';
      return prefix ? name.startsWith(prefix) : /^nl[0-9a-f]{4}/.test(name);
    });
}

/** Prefixes that have a state file or run directory under /run/nat-lab. */
export function knownPrefixes(): string[] {
  if (!existsSync(RUN_ROOT)) return [];
  const set = new Set<string>();
  for (const f of readdirSync(RUN_ROOT)) {
    const p = f.replace(/\.json$/, '');
    if (isPrefix(p)) set.add(p);
  }
  for (const ns of labNamespaces()) set.add(ns.slice(0, 6));
  return [...set].sort();
}

/**
 * Everything of run `prefix` (or of any nat-lab run when omitted) that still exists: namespaces, processes,
 * root-namespace interfaces and nft tables, state files and run directories. Empty means clean.
 */
export function leftovers(prefix?: string): string[] {
  const out: string[] = [];
  for (const ns of labNamespaces(prefix)) out.push(`namespace ${ns}`);
  for (const pid of taggedPids(prefix)) out.push(`process ${pid} (${cmdline(pid)})`);
  for (const l of rootLinks(prefix)) out.push(`root interface ${l}`);
  for (const t of rootNftTables(prefix)) out.push(`root nft table ${t}`);
  if (existsSync(RUN_ROOT)) {
    for (const f of readdirSync(RUN_ROOT)) {
      const p = f.replace(/\.json$/, '');
      if (!isPrefix(p)) continue;
      if (prefix && p !== prefix) continue;
      out.push(`${f.endsWith('.json') ? 'state file' : 'run directory'} ${RUN_ROOT}/${f}`);
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim().slice(0, 120);
  } catch {
    return '?';
  }
}

/** Removes everything run `prefix` created. Idempotent; returns what it removed, for logs. */
export function teardownSync(prefix: string): string[] {
  if (!isPrefix(prefix)) throw new TypeError(`not a nat-lab prefix: ${JSON.stringify(prefix)}`);
  const removed: string[] = [];
  const namespaces = labNamespaces(prefix);
  const pids = new Set<number>([...taggedPids(prefix), ...namespaces.flatMap(nsPids)]);
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    const alive = [...pids].filter(pidAlive);
    if (alive.length === 0) break;
    for (const pid of alive) {
      try {
        process.kill(pid, sig);
        if (sig === 'SIGTERM') removed.push(`process ${pid}`);
      } catch {
        // gone already
      }
    }
    const deadline = Date.now() + (sig === 'SIGTERM' ? 1500 : 2000);
    while ([...pids].some(pidAlive) && Date.now() < deadline) sleepSync(20);
  }
  if (namespaces.length > 0) {
    runSync(['ip', '-force', '-batch', '-'], {
      input: namespaces.map((n) => `netns del ${n}\n`).join(''),
      check: false,
    });
    removed.push(...namespaces.map((n) => `namespace ${n}`));
  }
  for (const l of rootLinks(prefix)) {
    runSync(['ip', 'link', 'del', 'dev', l], { check: false });
    removed.push(`root interface ${l}`);
  }
  for (const t of rootNftTables(prefix)) {
    runSync(['nft', 'delete', 'table', ...t.split(' ')], { check: false });
    removed.push(`root nft table ${t}`);
  }
  for (const p of [`${RUN_ROOT}/${prefix}`, `${RUN_ROOT}/${prefix}.json`]) {
    if (existsSync(p)) {
      rmSync(p, { recursive: true, force: true });
      removed.push(p);
    }
  }
  return removed;
}

// ---- live-lab registry: tear down on signals and exit ---------------------------------------------------------

const live = new Set<string>();
let signalsInstalled = false;
let exitInstalled = false;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function onSignal(sig: NodeJS.Signals): void {
  onExit();
  const num = sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15;
  process.exit(128 + num);
}

function onExit(): void {
  for (const p of [...live]) {
    live.delete(p);
    try {
      teardownSync(p);
    } catch {
      // best effort while exiting
    }
  }
}

/**
 * Registers a run for teardown on SIGINT/SIGTERM/SIGHUP and on process exit. The signal handlers are installed
 * only while some run is registered, so a process without live labs keeps its default signal behaviour.
 */
export function registerLive(prefix: string): void {
  live.add(prefix);
  if (!exitInstalled) {
    exitInstalled = true;
    process.on('exit', onExit);
  }
  if (!signalsInstalled) {
    signalsInstalled = true;
    for (const sig of SIGNALS) process.on(sig, onSignal);
  }
}

/** Forgets a run (after its own teardown, or when it should outlive this process). */
export function unregisterLive(prefix: string): void {
  live.delete(prefix);
  if (live.size === 0 && signalsInstalled) {
    signalsInstalled = false;
    for (const sig of SIGNALS) process.off(sig, onSignal);
  }
}
