/**
 * Running system commands for nat-lab: async with a timeout, or synchronously (teardown from signal and exit
 * handlers must not depend on the event loop). A failed command raises `MeshsockError(COMMAND)` naming the
 * command, its exit status and the first line of its stderr.
 */
import { execFile, spawnSync } from 'node:child_process';
import { ErrorCode, MeshsockError } from '../src/errors.js';

/** What a finished command left behind. `code` is the exit status (128 + n when killed by signal n). */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Killed (SIGKILL) after this long; default 60 s. */
  timeoutMs?: number;
  /** Throw on a non-zero exit status (default true). */
  check?: boolean;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

const DEFAULT_TIMEOUT_MS = 60_000;
const MAX_BUFFER = 64 * 1024 * 1024;

function failure(argv: readonly string[], r: ExecResult): MeshsockError {
  const why = r.stderr.trim().split('\n')[0] ?? '';
  return new MeshsockError(ErrorCode.COMMAND, `\`${argv.join(' ')}\` exited ${r.code}${why ? `: ${why}` : ''}`);
}

/** Runs `argv` and resolves with its output; rejects with COMMAND on a non-zero exit unless `check: false`. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<ExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new TypeError('"argv" must not be empty'));
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_BUFFER,
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: string }) | null;
        if (e && typeof e.code === 'string') {
          reject(
            new MeshsockError(ErrorCode.COMMAND, `\`${argv.join(' ')}\` could not start: ${e.code}`, { cause: e }),
          );
          return;
        }
        const code = e ? (typeof e.code === 'number' ? e.code : 128 + 9) : 0;
        const r: ExecResult = { code, stdout: String(stdout), stderr: String(stderr) };
        if (code !== 0 && opts.check !== false) reject(failure(argv, r));
        else resolve(r);
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Synchronous `run` for teardown paths (signal and exit handlers). */
export function runSync(argv: readonly string[], opts: RunOptions = {}): ExecResult {
  const [file, ...args] = argv;
  if (file === undefined) throw new TypeError('"argv" must not be empty');
  const r = spawnSync(file, args, {
    input: opts.input ?? '',
    timeout: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    killSignal: 'SIGKILL',
    maxBuffer: MAX_BUFFER,
    encoding: 'utf8',
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT')
    throw new MeshsockError(ErrorCode.COMMAND, `\`${argv.join(' ')}\` could not start: ENOENT`, { cause: r.error });
  const res: ExecResult = { code: r.status ?? 128 + 9, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
  if (res.code !== 0 && opts.check !== false) throw failure(argv, res);
  return res;
}

/** `ip netns exec NS argv…`. */
export function inNs(ns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...argv];
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Blocks the thread for `ms` (only for synchronous teardown). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** True when `cmd` is on PATH. */
export function have(cmd: string): boolean {
  return runSync(['sh', '-c', 'command -v "$1"', 'sh', cmd], { check: false }).code === 0;
}
