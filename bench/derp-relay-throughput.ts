/**
 * DERP relay throughput: 1280-byte datagrams from one sender to one receiver through a meshsock DerpServer, against
 * a plain Node TCP forwarder that pipes the same framed byte stream from the sender's socket to the receiver's
 * without parsing it ("framing-free"), measured in the same run, trials alternating, medians reported.
 *
 *   npx tsx bench/derp-relay-throughput.ts [seconds-per-trial=4] [rounds=3]
 *
 * The relay (DerpServer, or the forwarder) runs in its own child process; sender and receiver share the parent.
 *
 * 1. End to end (the headline, target ≥ 0.9×): DerpConn clients. The baseline clients do the same per-packet work
 *    as DerpConn — the sender builds each SendPacket frame (header + key + copy) and corks once per tick, the
 *    receiver parses every frame with FrameReader + decodeFrame and emits it — so the difference is the relay. The
 *    sender keeps at most WINDOW packets in flight past the highest sequence number received, like a transport
 *    with a congestion window inside the datagrams (a DERP server drops what a slow receiver cannot take, as
 *    Tailscale's does; a dropped packet then costs throughput but does not stall the window).
 * 2. Relay capacity: featherweight clients (the sender writes pre-built frames in 64 KiB blocks, the receiver only
 *    counts bytes), so the relay itself is the bottleneck. This is the per-packet price of parsing, routing and
 *    re-keying every frame in JavaScript, against a forwarder that touches no packet; reported with each relay's
 *    CPU time per packet, split into user and system.
 *
 * DERP_BENCH_PIN=1 pins the relay children to CPU 1 and this process to CPU 0 (taskset); DERP_BENCH_PROF_DIR=dir
 * writes V8 CPU profiles of the relay children there (the profiler itself slows them down).
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { clientInfoJson } from '../src/derp/client-handshake.js';
import { DerpConn } from '../src/derp/conn.js';
import { DERP, FrameType } from '../src/derp/constants.js';
import { decodeFrame, encodeFrame, encodeFrameHeaderInto, FrameReader, type Frame } from '../src/derp/frame.js';
import { DerpServer } from '../src/derp/server/index.js';
import { sealTo } from '../src/key/box.js';
import { PrivateKey, PublicKey } from '../src/key/keys.js';

const PACKET = 1280;
const WINDOW = Number(process.env.DERP_BENCH_WINDOW ?? 256);
const H = DERP.FRAME_HEADER_LEN;
const K = DERP.KEY_LEN;
const FRAME = H + K + PACKET;
const PACE_BYTES = 1 << 20;

interface Cpu {
  user: number;
  system: number;
}

// ---- relay children -------------------------------------------------------------------------------------------

function answerCpu(): void {
  process.on('message', (m) => {
    if (m === 'cpu') process.send!({ cpu: process.cpuUsage() });
  });
}

async function childDerp(): Promise<void> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port: 0 });
  process.send!({ url: s.url, port: s.address.port });
  answerCpu();
  process.on('message', (m) => {
    if (m === 'stats') process.send!({ stats: { ...s.stats().counters } });
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
  answerCpu();
  process.on('disconnect', () => process.exit(0));
}

function childCpu(child: ChildProcess): Promise<Cpu> {
  return new Promise((resolve) => {
    const on = (m: unknown): void => {
      if (typeof m === 'object' && m !== null && 'cpu' in m) {
        child.off('message', on);
        resolve((m as { cpu: Cpu }).cpu);
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
    const prof = process.env.DERP_BENCH_PROF_DIR;
    const execArgv = prof ? [...process.execArgv, '--cpu-prof', `--cpu-prof-dir=${prof}`] : process.execArgv;
    const child = fork(import.meta.filename, [mode], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    if (process.env.DERP_BENCH_PIN && child.pid !== undefined) pin(child.pid, 1);
    child.once('message', (msg) => resolve({ child, msg: msg as Record<string, unknown> }));
    child.once('error', reject);
  });
}

// ---- clients ----------------------------------------------------------------------------------------------------

/** One sender → relay → one receiver. `received`/`acked` count packets at the receiver. */
interface Pair {
  send(packet: Uint8Array): void;
  buffered(): number;
  received(): number;
  /** One past the highest sequence number received (packets carry a u32 sequence number first). */
  acked(): number;
  /** Set by the trial; the receiver calls it every 16 packets. */
  onProgress: () => void;
  close(): void;
}

function seqOf(p: Uint8Array): number {
  return ((p[0]! << 24) >>> 0) + ((p[1]! << 16) | (p[2]! << 8) | p[3]!);
}

function tcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
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
    for (let p = reader.nextPayload(); p; p = reader.nextPayload())
      events.emit('frame', decodeFrame(reader.lastType, p));
  });
  return pair;
}

/** Logs in over a raw socket (upgrade, ServerKey, ClientInfo, ServerInfo) and returns the socket. */
async function rawLogin(port: number, key: PrivateKey): Promise<Socket> {
  const s = await tcp(port);
  s.write('GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n');
  const reader = new FrameReader(DERP.MAX_CLIENT_FRAME);
  let head: Buffer | undefined = Buffer.alloc(0);
  await new Promise<void>((done) => {
    const on = (c: Buffer): void => {
      if (head) {
        head = Buffer.concat([head, c]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        c = head.subarray(end + 4);
        head = undefined;
      }
      reader.push(c);
      for (let f = reader.next(); f; f = reader.next()) {
        if (f.type === 'serverKey') {
          const sealed = sealTo(key, new PublicKey(f.key), new TextEncoder().encode(clientInfoJson({})));
          s.write(encodeFrame({ type: 'clientInfo', key: key.publicKey.bytes, sealed }));
        } else if (f.type === 'serverInfo') {
          s.off('data', on);
          done();
          return;
        }
      }
    };
    s.on('data', on);
  });
  return s;
}

/** Featherweight clients for the capacity test: pre-built frames out, bytes counted in. */
function lightPair(tx: Socket, rx: Socket, dst: Uint8Array): Pair {
  let bytes = 0;
  rx.on('data', (c: Buffer) => (bytes += c.length));
  const block = Buffer.concat(
    Array.from({ length: 50 }, () => encodeFrame({ type: 'sendPacket', dst, packet: new Uint8Array(PACKET) })),
  );
  return {
    send: () => tx.write(block),
    buffered: () => tx.writableLength,
    received: () => Math.floor(bytes / FRAME),
    acked: () => 0,
    onProgress: () => {},
    close: () => {
      tx.destroy();
      rx.destroy();
    },
  };
}

// ---- trials ----------------------------------------------------------------------------------------------------

interface TrialResult {
  pps: number;
  sentPps: number;
  relayCpu: Cpu;
}

/** Sends for 1 s of warm-up plus `seconds`; measures the receive rate and the relay's CPU time per packet. */
async function trial(
  pair: Pair,
  seconds: number,
  mode: 'windowed' | 'flat',
  relay: ChildProcess,
): Promise<TrialResult> {
  const packet = new Uint8Array(PACKET).fill(0x5a);
  let running = true;
  let sent = 0;
  const pump = (): void => {
    while (running && pair.buffered() < PACE_BYTES && (mode === 'flat' || sent - pair.acked() < WINDOW)) {
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
  if (mode === 'windowed') {
    pair.onProgress = pump;
    pump();
  } else loop();
  await new Promise((r) => setTimeout(r, 1000));
  const c0 = await childCpu(relay);
  const [r0, s0, t0] = [pair.received(), sent, performance.now()];
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const dt = (performance.now() - t0) / 1000;
  const received = pair.received() - r0;
  const c1 = await childCpu(relay);
  running = false;
  pair.close();
  await new Promise((r) => setTimeout(r, 200));
  return {
    pps: received / dt,
    sentPps: (sent - s0) / dt,
    relayCpu: { user: (c1.user - c0.user) / received, system: (c1.system - c0.system) / received },
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const kpps = (x: number): string => `${(x / 1000).toFixed(1)}k pkt/s`;
const mbit = (pps: number): string => `${((pps * PACKET * 8) / 1e6).toFixed(0)} Mbit/s`;
const cpuText = (c: Cpu[]): string => {
  const u = median(c.map((x) => x.user));
  const s = median(c.map((x) => x.system));
  return `${(u + s).toFixed(2)} µs (user ${u.toFixed(2)}, system ${s.toFixed(2)})`;
};

async function main(): Promise<void> {
  if (process.env.DERP_BENCH_PIN) pin(process.pid, 0);
  const seconds = Number(process.argv[2] ?? 4);
  const rounds = Number(process.argv[3] ?? 3);
  const derp = await spawnChild('derp');
  const fwd = await spawnChild('forwarder');
  const portR = fwd.msg.portR as number;
  const portS = fwd.msg.portS as number;
  const sections: {
    name: string;
    base: () => Promise<Pair>;
    ours: () => Promise<Pair>;
    mode: 'windowed' | 'flat';
    target?: string;
  }[] = [
    {
      name: `end to end, DerpConn clients, ${WINDOW} packets in flight`,
      base: () => baselinePair(portR, portS),
      ours: () => derpPair(derp.msg.url as string),
      mode: 'windowed',
      target: '  (target ≥ 0.9×)',
    },
    {
      name: 'relay capacity, featherweight clients (the relay is the bottleneck)',
      base: async () => {
        const rx = await tcp(portR);
        await new Promise((r) => setTimeout(r, 50));
        return lightPair(await tcp(portS), rx, new Uint8Array(K));
      },
      ours: async () => {
        const kr = PrivateKey.generate();
        const rx = await rawLogin(derp.msg.port as number, kr);
        return lightPair(await rawLogin(derp.msg.port as number, PrivateKey.generate()), rx, kr.publicKey.bytes);
      },
      mode: 'flat',
    },
  ];
  const lines: string[] = [];
  // DERP_BENCH_SECTION=1 or 2 runs only that section.
  const only = Number(process.env.DERP_BENCH_SECTION ?? 0);
  for (const sec of sections.filter((_, i) => only === 0 || i + 1 === only)) {
    const b: TrialResult[] = [];
    const d: TrialResult[] = [];
    for (let i = 0; i < rounds; i++) {
      b.push(await trial(await sec.base(), seconds, sec.mode, fwd.child));
      d.push(await trial(await sec.ours(), seconds, sec.mode, derp.child));
      process.stdout.write(`${sec.name}, round ${i + 1}: baseline ${kpps(b[i]!.pps)}, DERP ${kpps(d[i]!.pps)}\n`);
    }
    const mb = median(b.map((x) => x.pps));
    const md = median(d.map((x) => x.pps));
    const dropped = sec.mode === 'windowed' ? 1 - md / median(d.map((x) => x.sentPps)) : 0;
    lines.push(
      `  ${sec.name}`,
      `    baseline  plain TCP forwarder: ${kpps(mb)} (${mbit(mb)} payload)`,
      `    meshsock  DerpServer:          ${kpps(md)} (${mbit(md)} payload)` +
        (sec.mode === 'windowed'
          ? `, ${(100 * Math.max(0, dropped)).toFixed(1)} % of sent packets dropped by the relay`
          : ''),
      `    ratio     ${(md / mb).toFixed(3)}×${sec.target ?? ''}`,
      `    relay CPU per packet: forwarder ${cpuText(b.map((x) => x.relayCpu))}, DerpServer ${cpuText(d.map((x) => x.relayCpu))}`,
    );
  }
  derp.child.send('stats');
  const stats = await new Promise<Record<string, number>>((r) =>
    derp.child.on('message', (m) => {
      if (typeof m === 'object' && m !== null && 'stats' in m) r((m as { stats: Record<string, number> }).stats);
    }),
  );
  derp.child.disconnect();
  fwd.child.disconnect();
  process.stdout.write(
    `derp-relay-throughput (${PACKET} B datagrams, ${rounds} × ${seconds} s per setup and section, medians)\n${lines.join('\n')}\n` +
      `  server counters over the run: ${stats.packetsReceived} received, ${stats.packetsSent} sent, ` +
      `${stats.dropQueueFull} dropped (queue full)\n`,
  );
}

const mode = process.argv[2];
if (mode === 'derp') void childDerp();
else if (mode === 'forwarder') void childForwarder();
else void main();
