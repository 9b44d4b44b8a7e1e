/**
 * Steady traffic between two peers of a running lab, for fault scenarios: start the DERP server and the peer
 * program (nat-lab/peer.ts by default) on two hosts, watch their JSON lines, mark faults (SIGUSR2: each peer then
 * reports when the first datagram sent after the mark arrived, and the first that came direct), and stop them.
 *
 *   const relay = await startRelay(lab);                      // meshsock derp at the DERP slot, key kept on restart
 *   const t = await startTraffic(lab, ['a1', 'b1'], { intervalMs: 20 });
 *   await t.waitAll((e) => e.event === 'path' && e.type === 'direct', { timeoutMs: 15_000, what: 'direct' });
 *   const n = await t.mark();                                 // right after injecting a fault
 *   await t.waitAll((e) => e.event === 'resumed' && e.n === n, { timeoutMs: 30_000, what: 'delivery' });
 *   const final = await t.stop();                             // last stats per peer
 *
 * Every peer line carries `at` (wall clock, ms): the lab namespaces share the host's clock, so lines of both peers
 * and the test's own `Date.now()` marks sit on one timeline.
 */
import { join } from 'node:path';
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { sleep } from './exec.js';
import {
  fillDerpSlot,
  meshsockDerp,
  meshsockPeer,
  spawnPeerPair,
  type DerpProgram,
  type PeerEvent,
  type PeerProgram,
} from './matrix.js';
import type { LabProcess } from './process.js';
import type { Lab } from './topology.js';

/** A gap in the sequence numbers a peer received (nat-lab/peer.ts `stats.gaps`). */
export interface Gap {
  first: number;
  last: number;
  count: number;
  /** Send time (wall clock) of the datagram just before the gap, null when the gap starts at 0. */
  afterAt: number | null;
  /** Send time of the datagram just after the gap. */
  beforeAt: number | null;
}

/** A peer's `stats` line. */
export interface PeerStats {
  at: number;
  sent: number;
  received: number;
  highest: number;
  byPath: Record<string, number>;
  gaps: Gap[];
  duplicates: number;
}

export interface TrafficOptions {
  /** One datagram every this many ms, each way (default 20). */
  intervalMs?: number;
  /** The peers exit on their own after this long (default 10 min; `stop()` ends them sooner). */
  durationMs?: number;
  /** A pause in delivery at least this long is reported as `silence` (default max(100, 5 × interval)). */
  silenceMs?: number;
  /** Peer program (default: meshsockPeer()). */
  peer?: PeerProgram;
}

/** One running peer. */
export class TrafficPeer {
  constructor(
    readonly host: string,
    readonly proc: LabProcess,
  ) {}

  /** Every JSON line so far. */
  events(): PeerEvent[] {
    return this.proc.json() as PeerEvent[];
  }

  /** The latest `path` event. */
  path(): PeerEvent | undefined {
    return this.events()
      .filter((e) => e.event === 'path')
      .at(-1);
  }

  /** The latest `stats` line. */
  stats(): PeerStats | undefined {
    return this.events()
      .filter((e) => e.event === 'stats')
      .at(-1) as unknown as PeerStats | undefined;
  }

  /** Resolves with the first event (past or future) matching `pred`; rejects after `timeoutMs` or on exit. */
  async waitFor(pred: (e: PeerEvent) => boolean, opts: { timeoutMs: number; what: string }): Promise<PeerEvent> {
    const deadline = Date.now() + opts.timeoutMs;
    for (;;) {
      const hit = this.events().find(pred);
      if (hit) return hit;
      if (!this.proc.running())
        throw new MeshsockError(ErrorCode.COMMAND, `${this.host} exited waiting for ${opts.what}: ${this.proc.tail()}`);
      if (Date.now() > deadline)
        throw new MeshsockError(
          ErrorCode.TIMEOUT,
          `${this.host}: no ${opts.what} within ${opts.timeoutMs} ms; last lines: ${this.tailEvents()}`,
        );
      await sleep(25);
    }
  }

  /** The last few non-stats lines, for error messages. */
  tailEvents(n = 6): string {
    return this.events()
      .filter((e) => e.event !== 'stats')
      .slice(-n)
      .map((e) => JSON.stringify(e))
      .join(' ');
  }
}

/** Two peers sending to each other. */
export class Traffic {
  private marks = 0;

  constructor(readonly peers: readonly [TrafficPeer, TrafficPeer]) {}

  /** Waits until every peer has an event matching `pred`; returns them in peer order. */
  waitAll(pred: (e: PeerEvent) => boolean, opts: { timeoutMs: number; what: string }): Promise<PeerEvent[]> {
    return Promise.all(this.peers.map((p) => p.waitFor(pred, opts)));
  }

  /**
   * Marks a moment (SIGUSR2 to both peers) and returns the mark's number; each peer then prints `resumed` and
   * `resumed-direct` with that number. Resolves once both peers printed their `mark` line.
   */
  async mark(): Promise<number> {
    const n = ++this.marks;
    for (const p of this.peers) process.kill(p.proc.pid, 'SIGUSR2');
    await this.waitAll((e) => e.event === 'mark' && e.n === n, { timeoutMs: 5000, what: `mark ${n}` });
    return n;
  }

  /** SIGTERM both peers and wait for their final lines; returns each peer's last stats. */
  async stop(): Promise<PeerStats[]> {
    await Promise.all(this.peers.map((p) => p.proc.kill('SIGTERM', 5000)));
    await Promise.all(this.peers.map((p) => p.proc.exited));
    return this.peers.map((p) => {
      const s = p.stats();
      if (!s) throw new MeshsockError(ErrorCode.COMMAND, `${p.host} printed no stats: ${p.proc.tail()}`);
      return s;
    });
  }
}

/**
 * Starts the DERP server (default: `meshsock derp` with a key file in the run directory, so a restart keeps the
 * server's identity, as a deployed derper does) at the DERP slot as daemon `derp`; waits until it serves.
 */
export async function startRelay(lab: Lab, derp?: DerpProgram): Promise<LabProcess> {
  const prog = derp ?? (await meshsockDerp(['--key-file', join(lab.state.runDir, 'derp-key.json')]));
  const p = lab.startDerp(prog.argv.map((a) => fillDerpSlot(lab, a)));
  await p.waitForLine(prog.ready ?? /ready|listening|serving/i, 15_000);
  return p;
}

/** Starts the peer program on two hosts with fresh keys, pointed at each other, the lab's STUN and its DERP slot. */
export async function startTraffic(
  lab: Lab,
  hosts: readonly [string, string],
  opts: TrafficOptions = {},
): Promise<Traffic> {
  const peer = opts.peer ?? (await meshsockPeer());
  const intervalMs = opts.intervalMs ?? 20;
  const procs = spawnPeerPair(lab, hosts, peer, lab.state.derp.url, [
    '--duration-ms',
    String(opts.durationMs ?? 600_000),
    '--interval-ms',
    String(intervalMs),
    '--silence-ms',
    String(opts.silenceMs ?? Math.max(100, 5 * intervalMs)),
  ]);
  const t = new Traffic([new TrafficPeer(hosts[0], procs[0]!), new TrafficPeer(hosts[1], procs[1]!)]);
  await t.waitAll((e) => e.event === 'ready', { timeoutMs: 15_000, what: 'ready' });
  return t;
}
