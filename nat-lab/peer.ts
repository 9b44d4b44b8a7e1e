/**
 * The meshsock peer program for the nat-lab matrix and fault scenarios (contract: nat-lab/README.md, "Peer program
 * contract"). One MagicSocket on all interfaces of the host namespace, STUN from --stun, DERP from --derp (one
 * region, 900), steady traffic to the peer (a datagram every --interval-ms), and JSON lines on stdout. Every line
 * has `ms` (since the program started) and `at` (wall clock, ms since the epoch: lines of several peers and of the
 * test driving them share one timeline, since lab namespaces share the host's clock):
 *
 *   {"event":"ready","local":[…]}
 *   {"event":"first-datagram","via":"derp"|"direct"}
 *   {"event":"path","type":"direct"|"derp"|"none","addr"?,"reason"}   the socket's path to the peer changed
 *   {"event":"rx-path","type":"direct"|"derp"}                         datagrams now arrive over another path
 *   {"event":"relay","state":"…","lastError"?}                         the DERP region's state changed
 *   {"event":"silence","fromAt":T,"toAt":T,"gapMs":N,"via":"…"}        delivery resumed after ≥ --silence-ms
 *   {"event":"mark","n":N}                                             SIGUSR2 received (a test marks a fault)
 *   {"event":"resumed","n":N,"via":"…","sentAt":T,"afterMs":N}         first datagram sent after mark N arrived
 *   {"event":"resumed-direct","n":N,"sentAt":T,"afterMs":N}            … and the first one that came direct
 *   {"event":"stats","sent":N,"received":N,"highest":N,"byPath":{…},"gaps":[…],"duplicates":N}
 *                                                                      every second and at the end
 *   {"event":"status",…}                                               MagicSocket.status() at the end
 *   {"event":"error","message":"…"}                                    anything the socket threw or emitted
 *   {"event":"done"}
 *
 * Datagram layout (64 bytes): [0,4) sequence number (u32 BE) · [4,12) sender's wall clock at send (f64 BE, ms) ·
 * zeros. The receiver reports exactly which sequence numbers never arrived (`gaps`: {first, last, count, afterAt,
 * beforeAt}, where afterAt/beforeAt are the send times of the datagrams on either side of the gap — the lost ones
 * were sent in between).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { MagicSocket } from '../src/magicsock/magic-socket.js';
import type { PathInfo } from '../src/magicsock/peer-state.js';
import { PrivateKey, PublicKey } from '../src/key/keys.js';
import { parseAddrPort } from '../src/internal/addr.js';
import { fromHex } from '../src/internal/bytes.js';
import { parsePeerArgs } from './tools/peer-args.js';

const T0 = performance.now();
const ms = (): number => Math.round(performance.now() - T0);
const emit = (o: Record<string, unknown>): void =>
  void process.stdout.write(`${JSON.stringify({ ms: ms(), at: Date.now(), ...o })}\n`);

function fail(message: string): never {
  emit({ event: 'error', message });
  process.exit(2);
}

const {
  values,
  keyHex: key,
  peerHex,
} = parsePeerArgs({ 'derp-stun-port': { type: 'string' }, 'silence-ms': { type: 'string' } }, fail);
const num = (name: string, dflt: number): number => {
  const v = values[name];
  const n = Number(v ?? dflt);
  return Number.isFinite(n) && n > 0 ? n : fail(`--${name}: a positive number required, got ${String(v)}`);
};
const durationMs = num('duration-ms', 8000);
const intervalMs = num('interval-ms', 50);
/** A pause in delivery at least this long is reported as a `silence` line when delivery resumes. */
const silenceMs = num('silence-ms', Math.max(250, 5 * intervalMs));
const stunServers = ((values.stun as string[] | undefined) ?? []).map((s) => {
  try {
    return parseAddrPort(s);
  } catch {
    return fail(`--stun: bad ${s}`);
  }
});

let derpMap: Record<string, unknown> | undefined;
if (typeof values.derp === 'string') {
  const u = new URL(values.derp);
  const stunPort = Number(values['derp-stun-port'] ?? -1);
  derpMap = {
    regions: [
      {
        regionId: 900,
        regionCode: 'lab',
        regionName: 'nat-lab internet',
        nodes: [
          {
            name: '900a',
            hostName: u.hostname,
            ipv4: u.hostname,
            derpPort: Number(u.port || 80),
            stunPort,
            insecureForTests: true,
          },
        ],
      },
    ],
  };
}

// ---- relay state ----------------------------------------------------------------------------------------------

// The DERP client publishes every region state change on a diagnostics channel (no polling, nothing missed).
const onDerpState = (m: unknown): void => {
  const o = m as { region?: number; state?: string; error?: unknown };
  if (o.region === undefined || typeof o.state !== 'string') return; // connection-level lines: the region's suffice
  const error = o.error === undefined ? undefined : o.error instanceof Error ? o.error.message : String(o.error);
  emit({ event: 'relay', state: o.state, ...(error ? { lastError: error } : {}) });
};
subscribe('meshsock:derp:client', onDerpState);

const peer = new PublicKey(fromHex(peerHex));
const sock = await MagicSocket.create({
  privateKey: new PrivateKey(fromHex(key)),
  port: Number(values.port ?? 0),
  stunServers,
  ...(derpMap ? { derpMap } : {}),
});
emit({ event: 'ready', local: sock.status().localAddresses, name: values.name });
// The socket documents no 'error' event; if one is ever emitted, report it instead of crashing.
(sock as unknown as NodeJS.EventEmitter).on('error', (e: unknown) =>
  emit({ event: 'error', message: `socket emitted error: ${String(e)}` }),
);

const describe = (p: PathInfo): Record<string, unknown> =>
  p.type === 'direct'
    ? { type: 'direct', addr: p.addr }
    : p.type === 'derp'
      ? { type: 'derp', region: p.region }
      : { type: 'none' };
sock.on('path', (k, path, _prev, reason) => {
  if (k.equals(peer)) emit({ event: 'path', ...describe(path), reason });
});

// ---- receiving ------------------------------------------------------------------------------------------------

/** The last SIGUSR2 mark: which datagrams sent after it have arrived yet. */
let mark: { n: number; at: number; resumed: boolean; direct: boolean } | undefined;
let received = 0;
let duplicates = 0;
let highest = -1;
let rxPath: string | undefined;
let lastRxAt: number | undefined;
/** Sender's send time per sequence number received (NaN: not received). */
let sentAtBySeq = new Float64Array(1024).fill(NaN);
const byPath: Record<string, number> = {};
sock.on('message', (data, from, path) => {
  if (!from.equals(peer) || data.length < 12) return;
  const now = Date.now();
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const seq = view.getUint32(0);
  const sentAt = view.getFloat64(4);
  if (seq >= sentAtBySeq.length) {
    const bigger = new Float64Array(Math.max(seq + 1, 2 * sentAtBySeq.length)).fill(NaN);
    bigger.set(sentAtBySeq);
    sentAtBySeq = bigger;
  }
  if (!Number.isNaN(sentAtBySeq[seq]!)) {
    duplicates++; // the socket promises no duplicates across paths: count any that get through
    return;
  }
  sentAtBySeq[seq] = sentAt;
  received++;
  highest = Math.max(highest, seq);
  byPath[path.type] = (byPath[path.type] ?? 0) + 1;
  if (lastRxAt === undefined) emit({ event: 'first-datagram', via: path.type });
  else if (now - lastRxAt >= silenceMs)
    emit({ event: 'silence', fromAt: lastRxAt, toAt: now, gapMs: now - lastRxAt, via: path.type, seq });
  if (mark && sentAt >= mark.at) {
    if (!mark.resumed) {
      mark.resumed = true;
      emit({ event: 'resumed', n: mark.n, via: path.type, sentAt, afterMs: now - mark.at, seq });
    }
    if (!mark.direct && path.type === 'direct') {
      mark.direct = true;
      emit({ event: 'resumed-direct', n: mark.n, sentAt, afterMs: now - mark.at, seq });
    }
  }
  if (rxPath !== undefined && rxPath !== path.type) emit({ event: 'rx-path', type: path.type, from: rxPath, seq });
  rxPath = path.type;
  lastRxAt = now;
});

/** Sequence ranges the peer sent (up to the highest we saw) that never arrived, with the send times around them. */
function gaps(): Array<{
  first: number;
  last: number;
  count: number;
  afterAt: number | null;
  beforeAt: number | null;
}> {
  const out: Array<{ first: number; last: number; count: number; afterAt: number | null; beforeAt: number | null }> =
    [];
  let start = -1;
  for (let i = 0; i <= highest; i++) {
    const missing = Number.isNaN(sentAtBySeq[i]!);
    if (missing && start < 0) start = i;
    if (!missing && start >= 0) {
      const before = start > 0 ? sentAtBySeq[start - 1]! : NaN;
      out.push({
        first: start,
        last: i - 1,
        count: i - start,
        afterAt: Number.isNaN(before) ? null : before,
        beforeAt: sentAtBySeq[i]!,
      });
      start = -1;
    }
  }
  return out;
}

// ---- sending --------------------------------------------------------------------------------------------------

sock.addPeer(peer);
let sent = 0;
const payload = Buffer.alloc(64);
const tick = setInterval(() => {
  payload.writeUInt32BE(sent, 0);
  payload.writeDoubleBE(Date.now(), 4);
  try {
    sock.send(peer, payload);
    sent++;
  } catch (e) {
    emit({ event: 'error', message: `send threw: ${e instanceof Error ? e.message : String(e)}` });
  }
}, intervalMs);

const stats = (): void => emit({ event: 'stats', sent, received, highest, byPath, gaps: gaps(), duplicates });
const statsTimer = setInterval(stats, 1000);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(tick);
  clearInterval(statsTimer);
  unsubscribe('meshsock:derp:client', onDerpState);
  stats();
  const st = sock.status();
  emit({
    event: 'status',
    peer: st.peers[0],
    endpoints: st.endpoints,
    mappingVariesByDestIP: st.mappingVariesByDestIP,
    relay: st.relay,
    counters: st.counters,
  });
  await sock.close();
  emit({ event: 'done' });
  process.exit(0);
}
setTimeout(() => void stop(), durationMs);
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
process.on('SIGUSR2', () => {
  mark = { n: (mark?.n ?? 0) + 1, at: Date.now(), resumed: false, direct: false };
  emit({ event: 'mark', n: mark.n, path: describe(sock.pathOf(peer)) });
});
