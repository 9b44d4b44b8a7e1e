/**
 * DERP relay throughput: 1280-byte datagrams from one sender to one receiver through a meshsock DerpServer, against
 * a plain Node TCP forwarder that pipes the same framed byte stream from the sender's socket to the receiver's
 * without parsing it ("framing-free"), measured in the same run.
 *
 *   npx tsx bench/derp-relay-throughput.ts [seconds-per-trial=4] [rounds=3]
 *
 * The relay (DerpServer, or the forwarder) runs in its own child process; the sender and receiver share the parent.
 * Both setups do identical client-side work per packet: the sender builds a SendPacket frame (header + key + copy)
 * and writes it with one cork per tick; the receiver parses every frame with FrameReader + decodeFrame and emits it.
 * So the ratio isolates the relay.
 *
 * Two sender disciplines, each alternating baseline / DERP, medians reported:
 * - windowed (the headline): at most WINDOW packets in flight, refilled as the receiver counts them, like a
 *   congestion-controlled transport inside the datagrams. Nothing is dropped; target ratio ≥ 0.9.
 * - open loop: the sender writes flat out (paced only by its socket buffer). A TCP forwarder then back-pressures the
 *   sender, while a DERP server — like Tailscale's — drops what a slower receiver cannot take (datagram semantics),
 *   so the sender burns CPU on packets that are dropped. Reported with the drop share, for transparency.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { DerpConn } from '../src/derp/conn.js';
import { DERP, FrameType } from '../src/derp/constants.js';
import { decodeFrame, encodeFrameHeaderInto, FrameReader, type Frame } from '../src/derp/frame.js';
import { DerpServer } from '../src/derp/server/index.js';
import { PrivateKey } from '../src/key/keys.js';

const PACKET = 1280;
const WINDOW = Number(process.env.DERP_BENCH_WINDOW ?? 256);
const H = DERP.FRAME_HEADER_LEN;
const K = DERP.KEY_LEN;
const PACE_BYTES = 1 << 20;

// ---- child processes -------------------------------------------------------------------------------------------

async function childDerp(): Promise<void> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port: 0 });
  process.send!({ url: s.url });
  process.on('message', (m) => {
    if (m === 'stats') process.send!({ stats: { ...s.stats().counters } });
    if (m === 'cpu') process.send!({ cpu: cpuMicros() });
  });
  process.on('disconnect', () => void s.close().then(() => process.exit(0)));
}

async function childForwarder(): Promise<void> {
  // The receiver connects to portR first, then the sender to portS; bytes flow S → R untouched, with back-pressure.
  let receiver: Socket | undefined;
  const r = createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    receiver = s;
  });
  const sv = createServer((s) => {
    s.setNoDelay(true);
    s.on('error', () => {});
    if (receiver) s.pipe(receiver);
    else s.destroy();
  });
  await new Promise<void>((res) => r.listen(0, '127.0.0.1', () => res()));
  await new Promise<void>((res) => sv.listen(0, '127.0.0.1', () => res()));
  const port = (x: typeof r): number => (x.address() as { port: number }).port;
  process.send!({ portR: port(r), portS: port(sv) });
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: cpuMicros() });
  });
  process.on('disconnect', () => process.exit(0));
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  if (process.env.DERP_BENCH_CPU_SPLIT) process.stderr.write(`[${process.argv[2]}] user ${u.user} system ${u.system}\n`);
  return u.user + u.system;
}

/** CPU time (µs) the child has used so far. */
function childCpu(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && 'cpu' in m) {
        child.off('message', on);
        resolve((m as { cpu: number }).cpu);
      }
    };
    child.on('message', on);
    child.send('cpu');
  });
}

function pin(pid: number, cpu: number): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
  } catch {
    /* no taskset: run unpinned */
  }
}

function spawnChild(mode: string): Promise<{ child: ChildProcess; msg: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    // DERP_BENCH_PROF_DIR=dir writes a V8 CPU profile of each relay child there (for finding hot spots).
    const prof = process.env.DERP_BENCH_PROF_DIR;
    const execArgv = prof ? [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${prof}`] : process.execArgv;
    const child = fork(import.meta.filename, [mode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    // DERP_BENCH_PIN=1: relay children on CPU 1, this process (sender + receiver) on CPU 0, when taskset exists.
    if (process.env.DERP_BENCH_PIN && child.pid !== undefined) pin(child.pid, 1);
    child.once('message', (msg) => resolve({ child, msg: msg as Record<string, unknown> }));
    child.once('error', reject);
  });
}

// ---- parent: the two setups -------------------------------------------------------------------------------------

interface Pair {
  send(packet: Uint8Array): void;
  buffered(): number;
  received(): number;
  /** One past the highest sequence number received (packets carry a u32 sequence number in their first bytes). */
  acked(): number;
  /** Set by the trial; the receiver calls it every 16 packets. */
  onProgress: () => void;
  close(): void;
}

async function derpPair(url: string): Promise<Pair> {
  const kr = PrivateKey.generate();
  const rx = await DerpConn.connect({ url, privateKey: kr });
  const tx = await DerpConn.connect({ url, privateKey: PrivateKey.generate() });
  let n = 0;
  let acked = 0;
  const pair: Pair = {
    send: (p) => void tx.sendPacket(kr.publicKey, p),
    buffered: () => tx.bufferedAmount,
    received: () => n,
    acked: () => acked,
    onProgress: () => {},
    close: () => {
      tx.close();
      rx.close();
    },
  };
  rx.on('frame', (f: Frame) => {
    if (f.type !== 'recvPacket') return;
    acked = Math.max(acked, seqOf(f.packet) + 1);
    if (++n % 16 === 0) pair.onProgress();
  });
  return pair;
}

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** The same client-side work as DerpConn, over raw sockets to the forwarder. */
async function baselinePair(portR: number, portS: number): Promise<Pair> {
  const rx = await tcp(portR);
  await new Promise((r) => setTimeout(r, 50)); // let the forwarder register the receiver first
  const tx = await tcp(portS);
  const dst = PrivateKey.generate().publicKey.bytes;
  const reader = new FrameReader(DERP.MAX_CLIENT_FRAME);
  const events = new EventEmitter();
  let n = 0;
  let acked = 0;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    tx.uncork();
  };
  const pair: Pair = {
    send: (p) => {
      const out = Buffer.allocUnsafe(H + K + p.length);
      encodeFrameHeaderInto(FrameType.SEND_PACKET, K + p.length, out, 0);
      out.set(dst, H);
      out.set(p, H + K);
      if (!corked) {
        corked = true;
        tx.cork();
        process.nextTick(uncork);
      }
      tx.write(out);
    },
    buffered: () => tx.writableLength,
    received: () => n,
    acked: () => acked,
    onProgress: () => {},
    close: () => {
      tx.destroy();
      rx.destroy();
    },
  };
  events.on('frame', (f: Frame) => {
    if (f.type !== 'sendPacket') return;
    acked = Math.max(acked, seqOf(f.packet) + 1);
    if (++n % 16 === 0) pair.onProgress();
  });
  rx.on('data', (c: Buffer) => {
    reader.push(c);
    for (let p = reader.nextPayload(); p; p = reader.nextPayload()) events.emit('frame', decodeFrame(reader.lastType, p));
  });
  return pair;
}

/** Sends for 1 s of warm-up plus `seconds`; returns packets/s received, and sent, during the measured part. */
async function trial(
  pair: Pair,
  seconds: number,
  windowed: boolean,
  relay: ChildProcess,
): Promise<{ rx: number; tx: number; cpuPerPacket: number; clientCpuPerPacket: number }> {
  const packet = new Uint8Array(PACKET).fill(0x5a);
  let running = true;
  let sent = 0;
  const pump = (): void => {
    // The window counts from the highest sequence number received, so a packet the relay drops does not hold a
    // window slot forever (a transport inside would retransmit; here the loss just shows in the delivered rate).
    while (running && pair.buffered() < PACE_BYTES && (!windowed || sent - pair.acked() < WINDOW)) {
      packet[0] = sent >>> 24;
      packet[1] = (sent >>> 16) & 0xff;
      packet[2] = (sent >>> 8) & 0xff;
      packet[3] = sent & 0xff;
      pair.send(packet);
      sent++;
    }
  };
  const loop = (): void => {
    pump();
    if (running) setImmediate(loop);
  };
  if (windowed) {
    pair.onProgress = pump;
    pump();
  } else loop();
  await new Promise((r) => setTimeout(r, 1000));
  const c0 = await childCpu(relay);
  const m0 = cpuMicros();
  const [r0, s0, t0] = [pair.received(), sent, performance.now()];
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (performance.now() - t0) / 1000;
  const received = pair.received() - r0;
  const m1 = cpuMicros();
  const c1 = await childCpu(relay);
  const result = {
    rx: received / dt,
    tx: (sent - s0) / dt,
    cpuPerPacket: (c1 - c0) / received,
    clientCpuPerPacket: (m1 - m0) / received,
  };
  running = false;
  pair.close();
  await new Promise((r) => setTimeout(r, 200));
  return result;
}

function seqOf(p: Uint8Array): number {
  return ((p[0]! << 24) >>> 0) + ((p[1]! << 16) | (p[2]! << 8) | p[3]!);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const kpps = (x: number): string => `${(x / 1000).toFixed(1)}k pkt/s`;
const mbit = (pps: number): string => `${((pps * PACKET * 8) / 1e6).toFixed(0)} Mbit/s`;

async function main(): Promise<void> {
  if (process.env.DERP_BENCH_PIN) pin(process.pid, 0);
  const seconds = Number(process.argv[2] ?? 4);
  const rounds = Number(process.argv[3] ?? 3);
  const derp = await spawnChild('derp');
  const fwd = await spawnChild('forwarder');
  const baseline = (): Promise<Pair> => baselinePair(fwd.msg.portR as number, fwd.msg.portS as number);
  const ours = (): Promise<Pair> => derpPair(derp.msg.url as string);
  const lines: string[] = [];
  for (const windowed of [true, false]) {
    const b: number[] = [];
    const d: number[] = [];
    const dSent: number[] = [];
    const bCpu: number[] = [];
    const dCpu: number[] = [];
    for (let i = 0; i < rounds; i++) {
      // DERP_BENCH_ONLY=derp skips the baseline trials (for profiling the server alone).
      const rb =
        process.env.DERP_BENCH_ONLY === 'derp'
          ? { rx: 1, tx: 1, cpuPerPacket: 0, clientCpuPerPacket: 0 }
          : await trial(await baseline(), seconds, windowed, fwd.child);
      b.push(rb.rx);
      bCpu.push(rb.cpuPerPacket);
      const r = await trial(await ours(), seconds, windowed, derp.child);
      d.push(r.rx);
      dSent.push(r.tx);
      dCpu.push(r.cpuPerPacket);
      process.stdout.write(
        `${windowed ? 'windowed' : 'open loop'} round ${i + 1}: ` +
          `baseline ${kpps(b[i]!)} (CPU/pkt relay ${rb.cpuPerPacket.toFixed(2)} µs, clients ${rb.clientCpuPerPacket.toFixed(2)} µs), ` +
          `DERP ${kpps(d[i]!)} (relay ${r.cpuPerPacket.toFixed(2)} µs, clients ${r.clientCpuPerPacket.toFixed(2)} µs)\n`,
      );
    }
    const [mb, md] = [median(b), median(d)];
    const label = windowed ? `windowed (${WINDOW} packets in flight)` : 'open loop (sender flat out)';
    lines.push(
      `  ${label}`,
      `    baseline  plain TCP forwarder: ${kpps(mb)} (${mbit(mb)} payload)`,
      `    meshsock  DerpServer:          ${kpps(md)} (${mbit(md)} payload)` +
        `, ${(100 * Math.max(0, 1 - md / median(dSent))).toFixed(1)} % of sent packets dropped by the relay`,
      `    ratio     ${(md / mb).toFixed(3)}×${windowed ? '  (target ≥ 0.9×)' : ''}`,
      `    relay CPU per delivered packet: forwarder ${median(bCpu).toFixed(2)} µs, DerpServer ${median(dCpu).toFixed(2)} µs`,
    );
  }
  derp.child.send('stats');
  const stats = await new Promise<Record<string, number>>((r) => derp.child.once('message', (m) => r((m as { stats: Record<string, number> }).stats)));
  derp.child.disconnect();
  fwd.child.disconnect();
  process.stdout.write(
    `derp-relay-throughput (${PACKET} B datagrams, ${rounds} × ${seconds} s per setup, medians)\n${lines.join('\n')}\n` +
      `  server counters: ${stats.packetsReceived} received, ${stats.packetsSent} sent, ${stats.dropQueueFull} dropped (queue full)\n`,
  );
}

const mode = process.argv[2];
if (mode === 'derp') void childDerp();
else if (mode === 'forwarder') void childForwarder();
else void main();
