/**
 * Stand-in peer program for the matrix harness (nat-lab/README.md, "Peer program contract"), until meshsock's
 * virtual socket takes its place. It does what a magicsock does, crudely, with plain UDP:
 *   - one UDP socket; STUN to every --stun server, NAT-PMP to the default gateway, local addresses: candidates;
 *   - a relay connection (the stand-in relay at --derp) carries candidates ("call me maybe", every second) and the
 *     data until a direct path works;
 *   - UDP pings to every candidate of the peer every 250 ms; a ping is answered with a pong to its source address
 *     and that source becomes a candidate too; a pong makes that address the direct path;
 *   - one data datagram every --interval-ms, direct when there is a direct path, else over the relay.
 * Prints the contract's JSON lines and exits after --duration-ms.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { createInterface } from 'node:readline';
import { parsePeerArgs } from './peer-args.js';
import { bindingRequest, fmt, hex, isStun, parseBindingResponse, parseEndpoint, type Endpoint } from './stun-wire.js';
import {
  PORTMAP,
  natpmpExternalRequest,
  natpmpMapRequest,
  parseNatpmpExternal,
  parseNatpmpMap,
} from './portmap-wire.js';

const T0 = performance.now();
const ms = (): number => Math.round(performance.now() - T0);
const emit = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ ...o })}\n`);

function fail(message: string): never {
  emit({ event: 'error', message });
  process.exit(2);
}

const { values, keyHex, peerHex } = parsePeerArgs({}, fail);
const stunServers = ((values.stun as string[] | undefined) ?? []).map(
  (s) => parseEndpoint(s) ?? fail(`--stun: bad ${s}`),
);
const derpUrl = typeof values.derp === 'string' ? new URL(values.derp) : undefined;
const durationMs = Number(values['duration-ms'] ?? 8000);
const intervalMs = Number(values['interval-ms'] ?? 100);
const localPort = Number(values.port ?? 0);

// Our public key from the private key (X25519, PKCS#8 DER prefix for a raw 32-byte key).
const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), Buffer.from(keyHex, 'hex')]);
const jwk = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
const myHex = Buffer.from(jwk.x!, 'base64url').toString('hex');

const sock = createSocket({ type: 'udp4' });
const myCandidates = new Set<string>();
const peerCandidates = new Set<string>();
let direct: string | undefined;
let relay: Socket | undefined;
let firstDatagram = false;
let pathType: 'derp' | 'direct' | undefined;
let seq = 0;
const counters = { sentDirect: 0, sentRelay: 0, recvDirect: 0, recvRelay: 0, pings: 0, pongs: 0 };
const stunWaiters = new Map<string, (e: Endpoint) => void>();

function setPath(type: 'derp' | 'direct', addr?: string): void {
  if (pathType === type && (type === 'derp' || addr === direct)) return;
  pathType = type;
  emit({ event: 'path', type, ms: ms(), ...(addr ? { addr } : {}) });
}

function gotData(via: 'direct' | 'derp'): void {
  if (via === 'direct') counters.recvDirect++;
  else counters.recvRelay++;
  if (!firstDatagram) {
    firstDatagram = true;
    emit({ event: 'first-datagram', ms: ms(), via });
  }
}

sock.on('message', (msg: Buffer, r: RemoteInfo) => {
  const from = `${r.address}:${r.port}`;
  if (isStun(msg)) {
    const res = parseBindingResponse(msg);
    if (res?.mapped) stunWaiters.get(res.txid)?.(res.mapped);
    return;
  }
  let m: { t?: unknown; from?: unknown; tx?: unknown };
  try {
    m = JSON.parse(msg.toString('utf8')) as typeof m;
  } catch {
    return;
  }
  if (m.from !== peerHex) return;
  if (m.t === 'ping') {
    counters.pings++;
    peerCandidates.add(from);
    sock.send(JSON.stringify({ t: 'pong', from: myHex, tx: m.tx }), r.port, r.address);
  } else if (m.t === 'pong') {
    counters.pongs++;
    if (direct === undefined) direct = from;
    setPath('direct', direct);
  } else if (m.t === 'data') gotData('direct');
});

function stun(server: Endpoint): Promise<Endpoint | undefined> {
  return new Promise((resolve) => {
    const txid = randomBytes(12);
    let tries = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = (e: Endpoint | undefined): void => {
      clearTimeout(timer);
      stunWaiters.delete(hex(txid));
      resolve(e);
    };
    stunWaiters.set(hex(txid), done);
    const send = (): void => {
      if (tries++ >= 3) return done(undefined);
      sock.send(bindingRequest(txid), server.port, server.ip);
      timer = setTimeout(send, 300);
    };
    send();
  });
}

function defaultGateway(): string | undefined {
  try {
    for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[1] === '00000000' && f[2] && f[2] !== '00000000') {
        const g = Number.parseInt(f[2], 16);
        return [g & 255, (g >>> 8) & 255, (g >>> 16) & 255, g >>> 24].join('.');
      }
    }
  } catch {
    // no /proc: no gateway
  }
  return undefined;
}

/** NAT-PMP: external address + a UDP mapping for our port; undefined when the gateway does not answer. */
async function natpmp(port: number): Promise<Endpoint | undefined> {
  const gw = defaultGateway();
  if (!gw) return undefined;
  const s = createSocket('udp4');
  const ask = <T>(req: Uint8Array, parse: (b: Uint8Array) => T | undefined): Promise<T | undefined> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve(undefined), 300);
      s.on('message', (b) => {
        const v = parse(b);
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
        }
      });
      s.send(req, PORTMAP.serverPort, gw);
    });
  try {
    const ext = await ask(natpmpExternalRequest(), parseNatpmpExternal);
    if (!ext || ext.result !== 0) return undefined;
    s.removeAllListeners('message');
    const map = await ask(natpmpMapRequest(port, port, 120), parseNatpmpMap);
    if (!map || map.result !== 0) return undefined;
    return { ip: ext.ip, port: map.externalPort };
  } finally {
    s.close();
  }
}

function relaySend(msg: Record<string, unknown>): boolean {
  if (!relay || relay.destroyed || !relay.writable) return false;
  relay.write(`${JSON.stringify({ type: 'send', to: peerHex, msg })}\n`);
  return true;
}

function callMeMaybe(): void {
  relaySend({ kind: 'endpoints', eps: [...myCandidates] });
}

function connectRelay(): void {
  if (!derpUrl) return;
  const s = connect({ host: derpUrl.hostname, port: Number(derpUrl.port || 80) });
  s.setNoDelay(true);
  s.on('connect', () => {
    relay = s;
    s.write(`${JSON.stringify({ type: 'hello', key: myHex })}\n`);
    emit({ event: 'relay', state: 'connected', ms: ms() });
    if (pathType === undefined) setPath('derp');
    callMeMaybe();
  });
  createInterface({ input: s }).on('line', (line) => {
    let m: { type?: unknown; from?: unknown; msg?: { kind?: unknown; eps?: unknown } };
    try {
      m = JSON.parse(line) as typeof m;
    } catch {
      return;
    }
    if (m.type !== 'recv' || m.from !== peerHex || !m.msg) return;
    if (m.msg.kind === 'endpoints' && Array.isArray(m.msg.eps)) {
      for (const e of m.msg.eps) if (typeof e === 'string' && parseEndpoint(e)) peerCandidates.add(e);
    } else if (m.msg.kind === 'data') gotData('derp');
  });
  s.on('error', () => undefined);
  s.on('close', () => {
    if (relay === s) {
      relay = undefined;
      emit({ event: 'relay', state: 'disconnected', ms: ms() });
    }
    setTimeout(connectRelay, 500); // reconnect, e.g. across a DERP restart
  });
}

async function main(): Promise<void> {
  await new Promise<void>((resolve) => sock.bind(localPort, '0.0.0.0', () => resolve()));
  const port = sock.address().port;
  for (const addrs of Object.values(networkInterfaces()))
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) myCandidates.add(`${a.address}:${port}`);
  connectRelay();
  const [pm, ...mapped] = await Promise.all([natpmp(port), ...stunServers.map((srv) => stun(srv))]);
  for (const e of mapped) if (e) myCandidates.add(fmt(e));
  if (pm) myCandidates.add(fmt(pm));
  emit({
    event: 'endpoints',
    ms: ms(),
    local: port,
    stun: mapped.map((e) => (e ? fmt(e) : null)),
    portmap: pm ? fmt(pm) : null,
    candidates: [...myCandidates],
  });
  callMeMaybe();
  const cmm = setInterval(callMeMaybe, 1000);
  const ping = setInterval(() => {
    for (const c of peerCandidates) {
      const e = parseEndpoint(c)!;
      sock.send(JSON.stringify({ t: 'ping', from: myHex, tx: hex(randomBytes(6)) }), e.port, e.ip);
    }
  }, 250);
  const data = setInterval(() => {
    seq++;
    if (direct) {
      const e = parseEndpoint(direct)!;
      sock.send(JSON.stringify({ t: 'data', from: myHex, seq }), e.port, e.ip);
      counters.sentDirect++;
    } else if (relaySend({ kind: 'data', seq })) counters.sentRelay++;
  }, intervalMs);
  const left = durationMs - ms();
  await new Promise((r) => setTimeout(r, Math.max(0, left)));
  clearInterval(cmm);
  clearInterval(ping);
  clearInterval(data);
  emit({ event: 'stats', ...counters });
  emit({ event: 'done', ms: ms() });
  process.exit(0);
}

process.on('SIGTERM', () => {
  emit({ event: 'stats', ...counters });
  emit({ event: 'done', ms: ms(), signal: 'SIGTERM' });
  process.exit(0);
});

void main().catch((e: unknown) => fail(e instanceof Error ? e.message : String(e)));
