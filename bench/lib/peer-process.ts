/**
 * Plumbing shared by bench/magicsock-rate.ts and bench/magicsock-rtt.ts: each benchmark forks itself twice, one
 * process per side (as the baselines in reference/baselines.md were measured), and the parent routes messages.
 * MagicSockets in the two children find each other through a Signaller carried over the IPC channel, the way an
 * application would use any out-of-band channel.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as dgram from 'node:dgram';
import { PrivateKey, type PublicKey } from '../../src/key/keys.js';
import { MagicSocket } from '../../src/magicsock/magic-socket.js';
import type { Signaller } from '../../src/signal/signaller.js';

export type Msg = { type: string; [k: string]: unknown };

/** A forked copy of `script` running `role`; `request` sends a message and resolves with the first reply of `replyType`. */
export class Peer {
  readonly child: ChildProcess;
  private readonly waiters: Array<{ type: string; resolve: (m: Msg) => void }> = [];
  onOther: (m: Msg) => void = () => {};

  constructor(script: string, role: string, extraExecArgv: string[] = []) {
    this.child = fork(script, [role], { serialization: 'advanced', execArgv: [...process.execArgv, ...extraExecArgv] });
    this.child.on('message', (m: Msg) => {
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.onOther(m);
    });
  }

  next(type: string): Promise<Msg> {
    return new Promise((resolve) => this.waiters.push({ type, resolve }));
  }

  request(m: Msg, replyType: string): Promise<Msg> {
    const p = this.next(replyType);
    this.child.send(m);
    return p;
  }

  send(m: Msg): void {
    this.child.send(m);
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.send({ type: 'exit' });
    });
  }
}

/** Routes 'signal' messages between two children (each child's Signaller posts them to the parent). */
export function bridgeSignals(x: Peer, y: Peer): void {
  x.onOther = (m) => m.type === 'signal' && y.send(m);
  y.onOther = (m) => m.type === 'signal' && x.send(m);
}

/** In a child: a Signaller whose messages travel over the IPC channel (the parent forwards them). */
export function ipcSignaller(): Signaller {
  let deliver: ((m: Uint8Array) => void) | undefined;
  process.on('message', (m: Msg) => {
    if (m.type === 'signal') deliver?.(new Uint8Array(m.data as Uint8Array));
  });
  return {
    send: (_to: PublicKey, message: Uint8Array) => void process.send!({ type: 'signal', data: message }),
    listen: (_self, d) => {
      deliver = d;
      return () => (deliver = undefined);
    },
  };
}

/** In a child: handles requests from the parent; `handler` returns the reply (or nothing). 'exit' ends the child. */
export function serve(handler: (m: Msg) => Promise<Msg | void> | Msg | void, onExit: () => Promise<void> | void): void {
  process.on('message', (m: Msg) => {
    if (m.type === 'signal') return;
    if (m.type === 'exit') {
      void Promise.resolve(onExit()).finally(() => process.exit(0));
      return;
    }
    void Promise.resolve(handler(m)).then((r) => r && process.send!(r));
  });
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[n >> 1]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
}

export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `--name value` from argv, or the default. */
export function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

/**
 * Forks `script` as the two roles, connects their signallers, introduces them to each other and waits until both
 * report a path: the common start of every two-process benchmark. `--cpu-prof` on the command line profiles both.
 */
export async function startPair(
  script: string,
  roles: readonly [string, string],
): Promise<{ a: Peer; b: Peer; pathA: unknown; pathB: unknown }> {
  const cpuProf = process.argv.includes('--cpu-prof') ? ['--cpu-prof', '--cpu-prof-dir=bench-profiles'] : [];
  const a = new Peer(script, roles[0], cpuProf);
  const b = new Peer(script, roles[1], cpuProf);
  await Promise.all([a.next('up'), b.next('up')]);
  bridgeSignals(a, b);
  const ah = await a.request({ type: 'hello' }, 'hello');
  const bh = await b.request({ type: 'hello' }, 'hello');
  const [pa, pb] = await Promise.all([
    a.request({ type: 'peer', key: bh.key }, 'path'),
    b.request({ type: 'peer', key: ah.key, port: ah.port }, 'path'),
  ]);
  return { a, b, pathA: pa.path, pathB: pb.path };
}

/** A UDP socket on 127.0.0.1 with an OS-chosen port (the raw-dgram baseline); `bufferBytes` sets both buffers. */
export async function bindLoopbackUdp(bufferBytes?: number): Promise<dgram.Socket> {
  const s =
    bufferBytes === undefined
      ? dgram.createSocket('udp4')
      : dgram.createSocket({ type: 'udp4', recvBufferSize: bufferBytes, sendBufferSize: bufferBytes });
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  return s;
}

/** A MagicSocket on 127.0.0.1 with a fresh key, signalling over the IPC channel to the other process. */
export function loopbackMagicSocket(): Promise<MagicSocket> {
  return MagicSocket.create({ privateKey: PrivateKey.generate(), bindAddress: '127.0.0.1', signaller: ipcSignaller() });
}
