/**
 * STUN codec throughput: meshsock's hand codec against @msimerson/stun (the baseline named in DESIGN.md decision 5)
 * on the same inputs, in the same run. Prints ops/s for both and the ratio.
 *
 *   npx tsx bench/stun-codec.bench.ts
 */
import { createRequire } from 'node:module';
import {
  decodeBindingRequest,
  decodeBindingResponse,
  encodeBindingRequest,
  encodeBindingSuccess,
  isStun,
} from '../src/stun/message.js';

interface MsMessage {
  addSoftware(s: string): void;
  addFingerprint(): void;
  addXorAddress(ip: string, port: number): void;
  addAddress(ip: string, port: number): void;
  toBuffer(): Buffer;
}
const ms = createRequire(import.meta.url)('@msimerson/stun') as {
  createMessage(type: number, tx: Buffer): MsMessage;
  decode(b: Buffer): { getXorAddress(): { address: string; port: number } | undefined; getSoftware(): string };
  validateFingerprint(m: unknown): boolean;
};

const tx = new Uint8Array(12).map((_, i) => i * 17 + 3);
const txBuf = Buffer.from(tx);
const mapped = { ip: '203.0.113.9', port: 51820 };
const request = Buffer.from(encodeBindingRequest(tx));
const response = Buffer.from(encodeBindingSuccess(tx, mapped));
let sink = 0;

/** Median ops/s over `rounds` timed rounds of `n` calls, after a warm-up round. */
function measure(fn: () => unknown, n = 50_000, rounds = 7): number {
  for (let i = 0; i < n; i++) fn();
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t = performance.now();
    for (let i = 0; i < n; i++) if (fn()) sink++;
    rates.push(n / ((performance.now() - t) / 1000));
  }
  rates.sort((a, b) => a - b);
  return rates[rates.length >> 1]!;
}

const cases: [string, () => unknown, () => unknown][] = [
  [
    'encode Binding request (40 B, SOFTWARE + FINGERPRINT)',
    () => encodeBindingRequest(tx),
    () => {
      const m = ms.createMessage(0x0001, txBuf);
      m.addSoftware('tailnode');
      m.addFingerprint();
      return m.toBuffer();
    },
  ],
  [
    'decode Binding success → mapped (XOR, with FINGERPRINT check)',
    () => decodeBindingResponse(response),
    () => {
      const m = ms.decode(response);
      return ms.validateFingerprint(m) && m.getXorAddress();
    },
  ],
  [
    'decode Binding success → mapped (no FINGERPRINT check in the baseline)',
    () => decodeBindingResponse(response),
    () => ms.decode(response).getXorAddress(),
  ],
  [
    'server: decode request + encode success (XOR + MAPPED + SOFTWARE + FINGERPRINT)',
    () => encodeBindingSuccess(decodeBindingRequest(request).txId, mapped),
    () => {
      const req = ms.decode(request) as unknown as { transactionId: Buffer };
      const m = ms.createMessage(0x0101, req.transactionId);
      m.addXorAddress(mapped.ip, mapped.port);
      m.addAddress(mapped.ip, mapped.port);
      m.addSoftware('meshsock');
      m.addFingerprint();
      return m.toBuffer();
    },
  ],
];

const fmt = (n: number): string => `${(n / 1e6).toFixed(2)} M`.padStart(9);
console.log(`node ${process.version}; median of 7 rounds × 50,000 calls; ops/s`);
console.log(`${'case'.padEnd(84)} ${'meshsock'.padStart(9)} ${'@msimerson'.padStart(10)}  ratio`);
for (const [name, ours, theirs] of cases) {
  const a = measure(ours);
  const b = measure(theirs, 10_000);
  console.log(`${name.padEnd(84)} ${fmt(a)} ${fmt(b).padStart(10)}  ${(a / b).toFixed(1)}×`);
}
const demux = measure(() => isStun(response), 2_000_000);
console.log(`${'isStun (demultiplexing test, no baseline: @msimerson/stun has none)'.padEnd(84)} ${fmt(demux)}`);
if (sink < 0) console.log(sink);
