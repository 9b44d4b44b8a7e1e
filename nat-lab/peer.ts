/**
 * The meshsock peer program for the nat-lab matrix and fault scenarios (contract: nat-lab/README.md, "Peer program
 * contract"). One MagicSocket on all interfaces of the host namespace, STUN from --stun, DERP from --derp (one
 * region, 900), steady traffic to the peer (a datagram every --interval-ms), and JSON lines on stdout:
 *
 *   {"event":"ready","ms":N,"local":[…]}
 *   {"event":"first-datagram","ms":N,"via":"derp"|"direct"}
 *   {"event":"path","type":"direct"|"derp"|"none","ms":N,"addr"?,"reason"}
 *   {"event":"stats","ms":N,"sent":N,"received":N,"byPath":{…},"gaps":[…]}   every second and at the end
 *   {"event":"status","ms":N,…}                                            MagicSocket.status() at the end
 *   {"event":"done","ms":N}
 *
 * Datagrams carry a sequence number, so the receiver reports exactly which ones were lost (`gaps`).
 */
import { parseArgs } from 'node:util';
import { MagicSocket } from '../src/magicsock/magic-socket.js';
import type { PathInfo } from '../src/magicsock/peer-state.js';
import { PrivateKey, PublicKey } from '../src/key/keys.js';
import { parseAddrPort } from '../src/internal/addr.js';
import { fromHex } from '../src/internal/bytes.js';

const T0 = performance.now();
const ms = (): number => Math.round(performance.now() - T0);
const emit = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ ms: ms(), ...o })}\n`);

function fail(message: string): never {
  emit({ event: 'error', message });
  process.exit(2);
}

const { values } = parseArgs({
  options: {
    key: { type: 'string' },
    peer: { type: 'string' },
    stun: { type: 'string', multiple: true },
    derp: { type: 'string' },
    'derp-stun-port': { type: 'string' },
    'duration-ms': { type: 'string' },
    'interval-ms': { type: 'string' },
    port: { type: 'string' },
    name: { type: 'string' },
  },
  strict: false,
});
const key = typeof values.key === 'string' && /^[0-9a-f]{64}$/.test(values.key) ? values.key : fail('--key: 64 hex digits required');
const peerHex = typeof values.peer === 'string' && /^[0-9a-f]{64}$/.test(values.peer) ? values.peer : fail('--peer: 64 hex digits required');
const durationMs = Number(values['duration-ms'] ?? 8000);
const intervalMs = Number(values['interval-ms'] ?? 50);
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
        nodes: [{ name: '900a', hostName: u.hostname, ipv4: u.hostname, derpPort: Number(u.port || 80), stunPort, insecureForTests: true }],
      },
    ],
  };
}

const peer = new PublicKey(fromHex(peerHex));
const sock = await MagicSocket.create({
  privateKey: new PrivateKey(fromHex(key)),
  port: Number(values.port ?? 0),
  stunServers,
  ...(derpMap ? { derpMap } : {}),
});
emit({ event: 'ready', local: sock.status().localAddresses, name: values.name });

const describe = (p: PathInfo) => (p.type === 'direct' ? { type: 'direct', addr: p.addr } : p.type === 'derp' ? { type: 'derp', region: p.region } : { type: 'none' });
sock.on('path', (k, path, _prev, reason) => {
  if (k.equals(peer)) emit({ event: 'path', ...describe(path), reason });
});

let sent = 0;
let received = 0;
let first = true;
let highest = -1;
const seen = new Set<number>();
const byPath: Record<string, number> = {};
sock.on('message', (data, from, path) => {
  if (!from.equals(peer) || data.length < 4) return;
  const seq = Buffer.from(data.buffer, data.byteOffset, data.byteLength).readUInt32BE(0);
  received++;
  seen.add(seq);
  highest = Math.max(highest, seq);
  byPath[path.type] = (byPath[path.type] ?? 0) + 1;
  if (first) {
    first = false;
    emit({ event: 'first-datagram', via: path.type });
  }
});

sock.addPeer(peer);
const payload = Buffer.alloc(64);
const tick = setInterval(() => {
  payload.writeUInt32BE(sent++, 0);
  sock.send(peer, payload);
}, intervalMs);

/** Sequence ranges the peer sent (up to the highest we saw) that never arrived. */
function gaps(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let start = -1;
  for (let i = 0; i <= highest; i++) {
    if (!seen.has(i)) {
      if (start < 0) start = i;
    } else if (start >= 0) {
      out.push([start, i - 1]);
      start = -1;
    }
  }
  return out;
}
const stats = () => emit({ event: 'stats', sent, received, highest, byPath, gaps: gaps() });
const statsTimer = setInterval(stats, 1000);

let stopping = false;
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  clearInterval(tick);
  clearInterval(statsTimer);
  stats();
  const st = sock.status();
  emit({ event: 'status', peer: st.peers[0], endpoints: st.endpoints, mappingVariesByDestIP: st.mappingVariesByDestIP, counters: st.counters });
  await sock.close();
  emit({ event: 'done' });
  process.exit(0);
}
setTimeout(() => void stop(), durationMs);
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());
