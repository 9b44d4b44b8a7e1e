/**
 * 64-byte round trip through two MagicSockets on a direct loopback path, against a raw node:dgram ping-pong
 * measured in the same run with the same pattern. Target: the virtual socket adds ≤ 5 µs at p50.
 *
 *   npx tsx bench/magicsock-rtt.ts [--rounds 7] [--count 10000] [--cpu-prof]
 *
 * One process per side. The echo process holds a raw socket that sends every datagram back to its source
 * (`send(msg, rinfo.port, rinfo.address)`) and a MagicSocket that sends every message back to its peer. The
 * pinging process sends one 64-byte datagram, waits for its echo, records the round trip (process.hrtime), and
 * sends the next: `--count` round trips per run after 500 warm-up ones, raw and MagicSocket alternating for
 * `--rounds` rounds (order rotating). Printed: p50 / p99 per mode (median over rounds) and the added µs at p50 as
 * the median of the per-round differences (paired runs, which cancels slow changes in machine load).
 */
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { PublicKey } from '../src/key/keys.js';
import {
  arg,
  bindLoopbackUdp,
  loopbackMagicSocket,
  median,
  percentile,
  serve,
  sleep,
  startPair,
} from './lib/peer-process.js';

const SIZE = 64;
const WARMUP = 500;
const MODES = ['raw', 'magicsock'] as const;
type Mode = (typeof MODES)[number];

const role = process.argv[2];
if (role === 'echo') await echo();
else if (role === 'ping') await pinger();
else await main();

async function echo(): Promise<void> {
  const raw = await bindLoopbackUdp();
  const ms = await loopbackMagicSocket();
  raw.on('message', (msg, rinfo) => raw.send(msg, rinfo.port, rinfo.address));
  ms.on('message', (data, peer) => ms.send(peer, data));
  serve(
    async (m) => {
      if (m.type === 'hello') return { type: 'hello', port: raw.address().port, key: ms.publicKey.hex };
      if (m.type === 'peer') {
        const k = PublicKey.parse(m.key as string);
        ms.addPeer(k);
        return { type: 'path', path: await ms.waitForPath(k, { timeoutMs: 10_000 }) };
      }
    },
    async () => {
      raw.close();
      await ms.close();
    },
  );
  process.send!({ type: 'up' });
}

async function pinger(): Promise<void> {
  const raw = await bindLoopbackUdp();
  const ms = await loopbackMagicSocket();
  let peer: PublicKey | undefined;
  let port = 0;
  let onReply: (data: Uint8Array) => void = () => {};
  raw.on('message', (msg) => onReply(msg));
  ms.on('message', (data) => onReply(data));
  const paths: string[] = [];
  ms.on('path', (_k, p, _prev, why) => paths.push(`${p.type} (${why})`));
  serve(
    async (m) => {
      switch (m.type) {
        case 'hello':
          return { type: 'hello', key: ms.publicKey.hex };
        case 'peer':
          peer = PublicKey.parse(m.key as string);
          port = m.port as number;
          ms.addPeer(peer);
          return { type: 'path', path: await ms.waitForPath(peer, { timeoutMs: 10_000 }) };
        case 'run': {
          const count = m.count as number;
          const buf = Buffer.alloc(SIZE, 0x5a);
          const send = (m.mode as Mode) === 'raw' ? () => raw.send(buf, port, '127.0.0.1') : () => ms.send(peer!, buf);
          const rtts = new Float64Array(count);
          const before = paths.length;
          await new Promise<void>((resolve) => {
            let i = -WARMUP;
            let t0 = process.hrtime.bigint();
            onReply = (data) => {
              if (data.length !== SIZE || new DataView(data.buffer, data.byteOffset, 4).getInt32(0) !== i) return; // a stray echo
              const t = process.hrtime.bigint();
              if (i >= 0) rtts[i] = Number(t - t0) / 1000;
              if (++i >= count) return resolve();
              buf.writeInt32BE(i, 0);
              t0 = process.hrtime.bigint();
              send();
            };
            buf.writeInt32BE(i, 0);
            send();
          });
          onReply = () => {};
          rtts.sort();
          return {
            type: 'ran',
            p50: percentile(rtts, 50),
            p99: percentile(rtts, 99),
            pathChanges: paths.slice(before),
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

async function main(): Promise<void> {
  const rounds = arg('rounds', 7);
  const count = arg('count', 10_000);
  const { a: e, b: p, pathA, pathB } = await startPair(fileURLToPath(import.meta.url), ['echo', 'ping']);
  console.log(
    `node ${process.version}; direct path: ${JSON.stringify(pathB)} / ${JSON.stringify(pathA)}; load ${loadavg()[0]!.toFixed(2)}`,
  );
  await sleep(2500); // past the 2 s after a path change during which received datagrams may be checked for twins
  console.log(
    `${rounds} rounds × ${count} round trips of ${SIZE} B per mode (after ${WARMUP} warm-up), modes alternating\n`,
  );

  const res: Record<Mode, Array<{ p50: number; p99: number }>> = { raw: [], magicsock: [] };
  const pathChanges: string[] = [];
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < MODES.length; k++) {
      const mode = MODES[(k + r) % MODES.length]!;
      const ran = await p.request({ type: 'run', mode, count }, 'ran');
      res[mode].push({ p50: ran.p50 as number, p99: ran.p99 as number });
      if (mode === 'magicsock') pathChanges.push(...(ran.pathChanges as string[]));
    }
    console.log(
      `round ${r + 1}: raw p50 ${res.raw[r]!.p50.toFixed(1)} µs p99 ${res.raw[r]!.p99.toFixed(1)} µs | ` +
        `magicsock p50 ${res.magicsock[r]!.p50.toFixed(1)} µs p99 ${res.magicsock[r]!.p99.toFixed(1)} µs`,
    );
  }
  await Promise.all([e.stop(), p.stop()]);

  const m = (mode: Mode, q: 'p50' | 'p99') => median(res[mode].map((x) => x[q]));
  const added50 = median(res.magicsock.map((x, i) => x.p50 - res.raw[i]!.p50));
  const added99 = median(res.magicsock.map((x, i) => x.p99 - res.raw[i]!.p99));
  console.log(`\n            p50 (median of rounds)   p99 (median of rounds)`);
  console.log(
    `raw         ${m('raw', 'p50').toFixed(1).padStart(8)} µs              ${m('raw', 'p99').toFixed(1).padStart(8)} µs`,
  );
  console.log(
    `magicsock   ${m('magicsock', 'p50').toFixed(1).padStart(8)} µs              ${m('magicsock', 'p99').toFixed(1).padStart(8)} µs`,
  );
  console.log(`added (median of per-round differences): p50 ${added50.toFixed(1)} µs, p99 ${added99.toFixed(1)} µs`);
  console.log(`\ntarget: ≤ 5 µs added at p50 — ${added50 <= 5 ? 'meets' : 'MISSES'} the target`);
  console.log(
    `load average at the end: ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} (on ${cpus().length} CPUs)`,
  );
  console.log(`magicsock path changes during the runs: ${pathChanges.length ? pathChanges.join(', ') : 'none'}`);
}
