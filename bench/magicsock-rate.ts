/**
 * Datagram rate, sender → receiver, through two MagicSockets on a direct loopback path, against raw node:dgram
 * measured in the same run with the same pattern. Target: the virtual socket sends at ≥ 0.95× the raw rate.
 *
 *   npx tsx bench/magicsock-rate.ts [--rounds 30] [--seconds 0.2] [--sizes 64,1280] [--cpu-prof]
 *
 * One process per side (as in reference/baselines.md). The receiver process holds a raw dgram socket and a
 * MagicSocket; the sender process holds an unconnected raw socket, a connected raw socket and a MagicSocket whose
 * peer is the receiver's. Each run sends for `--seconds` in batches of BATCH datagrams with one event-loop turn
 * (setImmediate) between batches — the same loop for every mode — then the receiver's count is read once it
 * settles. Each round runs every mode once, in a rotating order; the ratios are the median over rounds of the
 * per-round ratio (paired runs a few hundred ms apart), which cancels slow changes in machine load.
 * CPU-normalised rates (datagrams per CPU-second of the process, user + system) are printed beside wall-clock
 * rates: the sender is CPU-bound by design, so on a shared machine the CPU figure is the steadier one.
 *
 * Baseline: raw `send(buf, port, addr)` on an unconnected socket — the virtual socket serves many peers from one
 * socket, so that is the like-for-like pattern. The connected-socket figure (13–15 % faster in baselines.md) is
 * printed too, for honesty. Sender rate = datagrams handed to send() per second of the send loop; receiver rate =
 * datagrams delivered per second between the first and last arrival; loss = 1 − received / sent (kernel receive
 * buffer overflows when the receiver is slower than the sender: both sockets ask for 7 MiB, capped by rmem_max).
 */
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { PublicKey } from '../src/key/keys.js';
import {
  arg,
  bindLoopbackUdp,
  loopbackMagicSocket,
  median,
  serve,
  sleep,
  startPair,
  yieldToLoop,
  type Msg,
} from './lib/peer-process.js';

const BATCH = 64;
const BUFFER = 7 << 20;
const MODES = ['raw', 'raw-connected', 'magicsock'] as const;
type Mode = (typeof MODES)[number];

const role = process.argv[2];
if (role === 'recv') await receiver();
else if (role === 'send') await sender();
else await main();

async function receiver(): Promise<void> {
  const raw = await bindLoopbackUdp(BUFFER);
  const ms = await loopbackMagicSocket();
  let count = 0;
  let first = 0;
  let last = 0;
  let cpu0 = process.cpuUsage();
  const onMsg = () => {
    if (count++ === 0) first = performance.now();
    last = performance.now();
  };
  raw.on('message', onMsg);
  ms.on('message', onMsg);
  serve(
    async (m) => {
      switch (m.type) {
        case 'hello':
          return { type: 'hello', port: raw.address().port, key: ms.publicKey.hex };
        case 'peer':
          ms.addPeer(PublicKey.parse(m.key as string));
          return { type: 'path', path: await ms.waitForPath(PublicKey.parse(m.key as string), { timeoutMs: 10_000 }) };
        case 'reset':
          count = 0;
          cpu0 = process.cpuUsage();
          return { type: 'reset' };
        case 'count': {
          const cpu = process.cpuUsage(cpu0);
          return {
            type: 'count',
            count,
            ms: last - first,
            cpuUs: cpu.user + cpu.system,
            counters: ms.counters.snapshot(),
          };
        }
      }
    },
    async () => {
      raw.close();
      await ms.close();
    },
  );
  process.send!({ type: 'up' });
}

async function sender(): Promise<void> {
  const raw = await bindLoopbackUdp(BUFFER);
  const conn = await bindLoopbackUdp(BUFFER);
  const ms = await loopbackMagicSocket();
  let peerKey: PublicKey | undefined;
  let port = 0;
  const paths: string[] = [];
  ms.on('path', (_k, p, _prev, why) => paths.push(`${p.type} (${why})`));
  serve(
    async (m) => {
      switch (m.type) {
        case 'hello':
          return { type: 'hello', key: ms.publicKey.hex };
        case 'peer': {
          peerKey = PublicKey.parse(m.key as string);
          port = m.port as number;
          await new Promise<void>((resolve) => conn.connect(port, '127.0.0.1', () => resolve()));
          ms.addPeer(peerKey);
          return { type: 'path', path: await ms.waitForPath(peerKey, { timeoutMs: 10_000 }) };
        }
        case 'run': {
          const buf = Buffer.alloc(m.size as number, 0x5a);
          const send: Record<Mode, () => void> = {
            raw: () => raw.send(buf, port, '127.0.0.1'),
            'raw-connected': () => conn.send(buf),
            magicsock: () => ms.send(peerKey!, buf),
          };
          const one = send[m.mode as Mode];
          const before = paths.length;
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const end = t0 + (m.seconds as number) * 1000;
          let sent = 0;
          while (performance.now() < end) {
            for (let i = 0; i < BATCH; i++) one();
            sent += BATCH;
            await yieldToLoop();
          }
          const ms_ = performance.now() - t0;
          const cpu = process.cpuUsage(cpu0);
          return {
            type: 'ran',
            sent,
            ms: ms_,
            cpuUs: cpu.user + cpu.system,
            pathChanges: paths.slice(before),
            counters: ms.counters.snapshot(),
          };
        }
      }
    },
    async () => {
      raw.close();
      conn.close();
      await ms.close();
    },
  );
  process.send!({ type: 'up' });
}

async function main(): Promise<void> {
  const rounds = arg('rounds', 30);
  const seconds = arg('seconds', 0.2);
  const sizesArg = process.argv.indexOf('--sizes');
  const sizes = sizesArg >= 0 ? process.argv[sizesArg + 1]!.split(',').map(Number) : [64, 1280];
  const { a: recv, b: send, pathA, pathB } = await startPair(fileURLToPath(import.meta.url), ['recv', 'send']);
  console.log(
    `node ${process.version}; direct path: sender → ${JSON.stringify(pathB)}, receiver → ${JSON.stringify(pathA)}`,
  );
  console.log(
    `${rounds} rounds × ${seconds} s per mode, batches of ${BATCH} per event-loop turn, modes alternating; load ${loadavg()[0]!.toFixed(2)}\n`,
  );

  /** pps = wall-clock rates; cpuPps = 1 / (CPU seconds per datagram): the rate on one full core, robust to load. */
  type Row = { sendPps: number; recvPps: number; loss: number; sendCpuPps: number; recvCpuPps: number };
  const results = new Map<string, Row[]>();
  let lastRecvCounters: unknown;
  let lastSendCounters: unknown;
  const pathChanges: string[] = [];
  for (const size of sizes) {
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < MODES.length; k++) {
        const mode = MODES[(k + round) % MODES.length]!;
        await recv.request({ type: 'reset' }, 'reset');
        const ran = await send.request({ type: 'run', mode, size, seconds }, 'ran');
        let prev = -1;
        let c: Msg = { type: 'count', count: 0 };
        for (let stable = 0; stable < 3;) {
          await sleep(30);
          c = await recv.request({ type: 'count' }, 'count');
          stable = c.count === prev ? stable + 1 : 0;
          prev = c.count as number;
          if (c.count === ran.sent) break;
        }
        const sent = ran.sent as number;
        const received = c.count as number;
        const row = {
          sendPps: sent / ((ran.ms as number) / 1000),
          recvPps: received / ((c.ms as number) / 1000),
          loss: 1 - received / sent,
          sendCpuPps: sent / ((ran.cpuUs as number) / 1e6),
          recvCpuPps: received / ((c.cpuUs as number) / 1e6),
        };
        const key = `${size}/${mode}`;
        results.set(key, [...(results.get(key) ?? []), row]);
        if (mode === 'magicsock') {
          lastRecvCounters = c.counters;
          lastSendCounters = ran.counters;
          pathChanges.push(...(ran.pathChanges as string[]));
        }
        await sleep(20);
      }
    }
  }
  await Promise.all([recv.stop(), send.stop()]);

  const k = (x: number) => `${(x / 1000).toFixed(1)}k`;
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const col = (rows: Row[], f: (r: Row) => number) => {
    const xs = rows.map(f);
    return `${k(median(xs)).padStart(7)} [${k(Math.min(...xs))}–${k(Math.max(...xs))}]`.padEnd(24);
  };
  /** Median over rounds of (mode / raw) in the same round. */
  const ratio = (size: number, mode: Mode, f: (r: Row) => number) => {
    const m = results.get(`${size}/${mode}`)!;
    const r = results.get(`${size}/raw`)!;
    return median(m.map((x, i) => f(x) / f(r[i]!)));
  };
  console.log(
    'Rates: medians [min–max] over the rounds. wall = datagrams per wall-clock second; cpu = per CPU-second of that',
  );
  console.log(
    'process (user + system), i.e. the rate on one full core, which is what holds steady on a shared machine.\n',
  );
  console.log(
    'size   mode            sender wall pps          sender cpu pps           receiver wall pps        receiver cpu pps         loss     paired ratio vs raw: send wall / send cpu / recv cpu',
  );
  for (const size of sizes) {
    for (const mode of MODES) {
      const rows = results.get(`${size}/${mode}`)!;
      const vs =
        mode === 'raw'
          ? ''
          : [
              ratio(size, mode, (r) => r.sendPps),
              ratio(size, mode, (r) => r.sendCpuPps),
              ratio(size, mode, (r) => r.recvCpuPps),
            ]
              .map((x) => `${x.toFixed(3)}×`)
              .join(' / ');
      console.log(
        `${String(size).padEnd(5)}  ${mode.padEnd(14)}  ${col(rows, (r) => r.sendPps)} ${col(rows, (r) => r.sendCpuPps)} ${col(rows, (r) => r.recvPps)} ${col(rows, (r) => r.recvCpuPps)} ${pct(median(rows.map((x) => x.loss))).padStart(7)}  ${vs}`,
      );
    }
  }
  const load = loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
  console.log(
    `\nload average at the end: ${load} (on ${cpus().length} CPUs; wall-clock figures are only comparable on an idle machine)`,
  );
  console.log('target: magicsock sender rate ≥ 0.95× raw unconnected send(buf, port, addr), same size, same run');
  for (const size of sizes) {
    const w = ratio(size, 'magicsock', (r) => r.sendPps);
    const c = ratio(size, 'magicsock', (r) => r.sendCpuPps);
    console.log(
      `  ${size} B: ${c.toFixed(3)}× per CPU-second (${c >= 0.95 ? 'meets' : 'MISSES'}), ${w.toFixed(3)}× wall-clock (${w >= 0.95 ? 'meets' : 'misses'})`,
    );
  }
  console.log(`magicsock path changes during the runs: ${pathChanges.length ? pathChanges.join(', ') : 'none'}`);
  console.log('receiver MagicSocket counters:', JSON.stringify(lastRecvCounters));
  console.log('sender MagicSocket counters:', JSON.stringify(lastSendCounters));
}
