/**
 * Processes running inside lab namespaces.
 *
 * A `LabProcess` is started with `ip netns exec NS argv…` (which execs the command, so the pid is the command's)
 * in its own process group, tagged with NAT_LAB_PREFIX in its environment. Two kinds:
 *   - attached (default): stdout and stderr are piped back; `lines` / `stderrLines` fill as output arrives;
 *   - daemon: output goes to a log file and the process outlives this Node process (used by `nat-lab up`).
 * Both offer `waitForLine`, `kill` (SIGTERM, then SIGKILL after a grace period) and `restart` (same argv, same
 * namespace, new pid). Teardown does not rely on these handles: it kills every process in the run's namespaces.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { PREFIX_ENV } from './plan.js';
import { sleep } from './exec.js';

export interface SpawnOptions {
  /** Label for logs, state and `restart` (default: the program's base name). */
  name?: string;
  /** Detach, write output to `logFile` and outlive this process. */
  daemon?: boolean;
  /** Daemon log file (required with `daemon`). */
  logFile?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Working directory (default: this process's). */
  cwd?: string;
}

/** What is saved about a process in the lab's state file. */
export interface ProcessRecord {
  name: string;
  node: string;
  ns: string;
  pid: number;
  argv: string[];
  daemon: boolean;
  logFile?: string;
  cwd?: string;
  env?: Record<string, string>;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** True when a process with this pid exists (and is not a zombie). Never throws. */
export function pidAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

export class LabProcess {
  readonly name: string;
  readonly node: string;
  readonly ns: string;
  readonly argv: readonly string[];
  readonly daemon: boolean;
  readonly logFile: string | undefined;
  /** stdout lines (attached) or log-file lines (daemon, refreshed by `refresh()` / `waitForLine`). */
  lines: string[] = [];
  /** stderr lines (attached processes only). */
  readonly stderrLines: string[] = [];
  pid: number;
  /** Resolves when the process exits (only for processes this Node process started). */
  exited: Promise<ExitInfo>;
  private child: ChildProcess | undefined;
  private exitInfo: ExitInfo | undefined;
  private readonly prefix: string;
  private readonly env: Record<string, string> | undefined;
  private readonly cwd: string | undefined;
  private listeners: Array<(line: string) => void> = [];
  /** Where this run's output starts in a daemon's log (the log is appended to across restarts). */
  private logOffset = 0;

  private constructor(prefix: string, node: string, ns: string, argv: readonly string[], opts: SpawnOptions) {
    this.prefix = prefix;
    this.node = node;
    this.ns = ns;
    this.argv = [...argv];
    this.name = opts.name ?? (argv[0] ?? 'process').split('/').pop()!;
    this.daemon = opts.daemon === true;
    this.logFile = opts.logFile;
    this.env = opts.env;
    this.cwd = opts.cwd;
    this.pid = 0;
    this.exited = Promise.resolve({ code: null, signal: null });
    if (this.daemon && !this.logFile) throw new TypeError('a daemon needs "logFile"');
  }

  /** Starts `argv` in namespace `ns`. */
  static start(prefix: string, node: string, ns: string, argv: readonly string[], opts: SpawnOptions = {}): LabProcess {
    const p = new LabProcess(prefix, node, ns, argv, opts);
    p.launch();
    return p;
  }

  /** A handle for a process started earlier (possibly by another nat-lab process), from the state file. */
  static adopt(prefix: string, rec: ProcessRecord): LabProcess {
    const p = new LabProcess(prefix, rec.node, rec.ns, rec.argv, {
      name: rec.name,
      daemon: rec.daemon,
      ...(rec.logFile ? { logFile: rec.logFile } : {}),
      ...(rec.env ? { env: rec.env } : {}),
      ...(rec.cwd ? { cwd: rec.cwd } : {}),
    });
    p.pid = rec.pid;
    p.exited = new Promise((resolve) => {
      // unref'd polling: an adopted handle must not keep the CLI's event loop alive
      const poll = (): void => {
        if (!pidAlive(p.pid)) resolve({ code: null, signal: null });
        else setTimeout(poll, 100).unref();
      };
      poll();
    });
    return p;
  }

  private launch(): void {
    const env = { ...process.env, ...this.env, [PREFIX_ENV]: this.prefix };
    let logFd: number | undefined;
    if (this.daemon) {
      logFd = openSync(this.logFile!, 'a');
      this.logOffset = statSync(this.logFile!).size;
    }
    const child = spawn('ip', ['netns', 'exec', this.ns, ...this.argv], {
      detached: true,
      stdio: this.daemon ? ['ignore', logFd!, logFd!] : ['ignore', 'pipe', 'pipe'],
      env,
      ...(this.cwd ? { cwd: this.cwd } : {}),
    });
    if (logFd !== undefined) closeSync(logFd);
    this.child = child;
    this.exitInfo = undefined;
    this.pid = child.pid ?? 0;
    this.exited = new Promise((resolve) => {
      // 'close' comes after 'exit' once stdout/stderr are drained, so every line has been seen
      child.once('close', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
      child.once('error', () => {
        this.exitInfo = { code: 127, signal: null };
        resolve(this.exitInfo);
      });
    });
    if (this.daemon) {
      child.unref();
    } else {
      const rl = createInterface({ input: child.stdout! });
      rl.on('line', (l) => {
        this.lines.push(l);
        for (const cb of this.listeners) cb(l);
      });
      createInterface({ input: child.stderr! }).on('line', (l) => this.stderrLines.push(l));
    }
  }

  /** The record saved in the state file. */
  record(): ProcessRecord {
    return {
      name: this.name,
      node: this.node,
      ns: this.ns,
      pid: this.pid,
      argv: [...this.argv],
      daemon: this.daemon,
      ...(this.logFile ? { logFile: this.logFile } : {}),
      ...(this.cwd ? { cwd: this.cwd } : {}),
      ...(this.env ? { env: this.env } : {}),
    };
  }

  /** True while the process runs. */
  running(): boolean {
    if (this.child) return this.exitInfo === undefined && this.pid > 0;
    return pidAlive(this.pid);
  }

  /** Re-reads a daemon's log file into `lines`. */
  refresh(): string[] {
    if (this.daemon && this.logFile && existsSync(this.logFile)) {
      const text = readFileSync(this.logFile).subarray(this.logOffset).toString('utf8');
      this.lines = text.split('\n').filter((l) => l.length > 0);
    }
    return this.lines;
  }

  /** Calls `cb` for every later stdout line (attached processes). */
  onLine(cb: (line: string) => void): () => void {
    this.listeners.push(cb);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== cb);
    };
  }

  /** stdout lines parsed as JSON (lines that are not JSON objects are skipped). */
  json(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const l of this.daemon ? this.refresh() : this.lines) {
      if (!l.startsWith('{')) continue;
      try {
        const v: unknown = JSON.parse(l);
        if (typeof v === 'object' && v !== null) out.push(v as Record<string, unknown>);
      } catch {
        // not JSON: ignore
      }
    }
    return out;
  }

  /** Resolves with the first line (past or future) that matches; rejects on timeout or exit. */
  async waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs = 10_000): Promise<string> {
    const test = typeof match === 'function' ? match : (l: string) => match.test(l);
    const deadline = Date.now() + timeoutMs;
    let exited = false;
    void this.exited.then(() => (exited = true));
    for (;;) {
      const found = (this.daemon ? this.refresh() : this.lines).find(test);
      if (found !== undefined) return found;
      if (exited || (!this.child && !pidAlive(this.pid))) {
        await sleep(20); // let the last output arrive
        const late = (this.daemon ? this.refresh() : this.lines).find(test);
        if (late !== undefined) return late;
        throw new MeshsockError(
          ErrorCode.COMMAND,
          `${this.name} in ${this.node} exited before printing ${String(match)}: ${this.tail()}`,
        );
      }
      if (Date.now() > deadline)
        throw new MeshsockError(
          ErrorCode.TIMEOUT,
          `${this.name} in ${this.node} did not print ${String(match)} within ${timeoutMs} ms: ${this.tail()}`,
        );
      await sleep(25);
    }
  }

  /** The last few lines of output, for error messages. */
  tail(n = 5): string {
    const all = [...(this.daemon ? this.refresh() : this.lines), ...this.stderrLines];
    return all.slice(-n).join(' | ') || '(no output)';
  }

  /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves when it is gone. */
  async kill(signal: NodeJS.Signals = 'SIGTERM', graceMs = 1000): Promise<void> {
    if (this.pid <= 0 || !this.running()) return;
    signalGroup(this.pid, signal);
    const deadline = Date.now() + graceMs;
    while (this.running() && Date.now() < deadline) await sleep(20);
    if (this.running()) {
      signalGroup(this.pid, 'SIGKILL');
      const hard = Date.now() + 2000;
      while (this.running() && Date.now() < hard) await sleep(20);
    }
  }

  /** Kills the process and starts the same argv in the same namespace again (new pid). */
  async restart(): Promise<void> {
    await this.kill();
    this.lines = [];
    this.stderrLines.length = 0;
    this.launch();
  }
}

/** Signals a process group, falling back to the single process. Never throws. */
export function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}
