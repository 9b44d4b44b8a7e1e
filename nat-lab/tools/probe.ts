/**
 * nat-lab UDP/TCP probe: runs inside a lab namespace and prints one JSON object per line on stdout.
 *
 *   probe stun --bind IP:PORT --server IP:PORT [--server …] [--timeout-ms 400] [--tries 4] [--listen-ms N]
 *       Binding requests from ONE socket to each server in turn: {"event":"mapped","server","mapped","other"?,
 *       "rttMs"} or {"event":"stun-timeout","server"}. With --listen-ms the socket then stays open and every
 *       non-STUN datagram is printed as {"event":"recv","from","data"} ({"event":"listening"} first).
 *   probe send --to IP:PORT --from IP:PORT[=LABEL] [--from …] [--count 3] [--interval-ms 20]
 *       Sends LABEL (default "probe") from each fixed local address to the target: {"event":"sent",…}.
 *   probe recv --bind IP:PORT --ms N              prints every datagram that arrives for N ms.
 *   probe rtt --bind IP:PORT --server IP:PORT [--count 20] [--interval-ms 20]
 *       STUN transactions as pings: {"event":"rtt","samples":[ms…],"lost","min","p50","max"}.
 *   probe tcp-listen --bind IP:PORT [--bind …] [--ms N]   accepts, answers "ok\n", closes.
 *   probe tcp-connect --to IP:PORT [--to …] [--timeout-ms 700]   {"event":"tcp","to","ok"}.
 *   probe pcp-map --gateway IP --internal-port P [--external-port Q] [--lifetime 60] [--timeout-ms 1000]
 *       One PCP MAP request (RFC 6887): {"event":"pcp","result","externalIp","externalPort","lifetime"}.
 *
 * Every run ends with {"event":"done"}; bad arguments print {"event":"error","message"} and exit 2.
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { bindingRequest, fmt, hex, isStun, parseBindingResponse, parseEndpoint, type Endpoint } from './stun-wire.js';
import { PORTMAP, parsePcpMap, pcpMapRequest } from './portmap-wire.js';

function out(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

class UsageError extends Error {}

function ep(s: string | undefined, what: string): Endpoint {
  const e = s === undefined ? undefined : parseEndpoint(s);
  if (!e) throw new UsageError(`${what}: expected IP:PORT, got ${JSON.stringify(s)}`);
  return e;
}

function int(s: string | undefined, dflt: number, what: string): number {
  if (s === undefined) return dflt;
  const n = Number(s);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${what}: expected a non-negative integer, got ${s}`);
  return n;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function bindUdp(e: Endpoint): Promise<Socket> {
  const s = createSocket({ type: 'udp4' });
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(e.port, e.ip, () => {
      s.off('error', reject);
      resolve();
    });
  });
  return s;
}

/** One Binding transaction with retransmission; resolves undefined after `tries` timeouts. */
function stunOnce(
  sock: Socket,
  server: Endpoint,
  timeoutMs: number,
  tries: number,
): Promise<{ mapped?: Endpoint; other?: Endpoint; rttMs: number } | undefined> {
  return new Promise((resolve) => {
    const txid = randomBytes(12);
    const want = hex(txid);
    const req = bindingRequest(txid);
    let sent = 0;
    let t0 = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const onMsg = (msg: Buffer): void => {
      const r = parseBindingResponse(msg);
      if (!r || r.txid !== want) return;
      finish({
        ...(r.mapped ? { mapped: r.mapped } : {}),
        ...(r.other ? { other: r.other } : {}),
        rttMs: performance.now() - t0,
      });
    };
    const finish = (v: { mapped?: Endpoint; other?: Endpoint; rttMs: number } | undefined): void => {
      clearTimeout(timer);
      sock.off('message', onMsg);
      resolve(v);
    };
    const send = (): void => {
      if (sent >= tries) return finish(undefined);
      sent++;
      t0 = performance.now();
      sock.send(req, server.port, server.ip);
      timer = setTimeout(send, timeoutMs);
    };
    sock.on('message', onMsg);
    send();
  });
}

async function cmdStun(v: Record<string, string | string[] | undefined>): Promise<void> {
  const servers = ((v.server as string[] | undefined) ?? []).map((s) => ep(s, '--server'));
  if (servers.length === 0) throw new UsageError('--server is required');
  const sock = await bindUdp(ep((v.bind as string | undefined) ?? '0.0.0.0:0', '--bind'));
  const timeoutMs = int(v['timeout-ms'] as string | undefined, 400, '--timeout-ms');
  const tries = int(v.tries as string | undefined, 4, '--tries');
  const listenMs = int(v['listen-ms'] as string | undefined, 0, '--listen-ms');
  out({ event: 'bound', local: local(sock) });
  for (const server of servers) {
    const r = await stunOnce(sock, server, timeoutMs, tries);
    if (r?.mapped)
      out({
        event: 'mapped',
        server: fmt(server),
        mapped: fmt(r.mapped),
        ...(r.other ? { other: fmt(r.other) } : {}),
        rttMs: round(r.rttMs),
      });
    else out({ event: 'stun-timeout', server: fmt(server) });
  }
  if (listenMs > 0) {
    sock.on('message', (msg, rinfo) => {
      if (isStun(msg)) return;
      out({ event: 'recv', from: `${rinfo.address}:${rinfo.port}`, data: msg.toString('utf8') });
    });
    out({ event: 'listening' });
    await sleep(listenMs);
  }
  sock.close();
}

async function cmdSend(v: Record<string, string | string[] | undefined>): Promise<void> {
  const to = ep(v.to as string | undefined, '--to');
  const froms = ((v.from as string[] | undefined) ?? []).map((f) => {
    const [addr, label] = f.split('=', 2);
    return { local: ep(addr, '--from'), label: label ?? 'probe' };
  });
  if (froms.length === 0) throw new UsageError('--from is required');
  const count = int(v.count as string | undefined, 3, '--count');
  const interval = int(v['interval-ms'] as string | undefined, 20, '--interval-ms');
  const socks = await Promise.all(froms.map((f) => bindUdp(f.local)));
  for (let i = 0; i < count; i++) {
    froms.forEach((f, j) => socks[j]!.send(Buffer.from(f.label), to.port, to.ip));
    if (i + 1 < count) await sleep(interval);
  }
  await sleep(10);
  froms.forEach((f) => out({ event: 'sent', from: fmt(f.local), to: fmt(to), label: f.label, count }));
  socks.forEach((s) => s.close());
}

async function cmdRecv(v: Record<string, string | string[] | undefined>): Promise<void> {
  const sock = await bindUdp(ep(v.bind as string | undefined, '--bind'));
  const ms = int(v.ms as string | undefined, 1000, '--ms');
  sock.on('message', (msg, rinfo) =>
    out({ event: 'recv', from: `${rinfo.address}:${rinfo.port}`, data: msg.toString('utf8') }),
  );
  out({ event: 'listening', local: local(sock) });
  await sleep(ms);
  sock.close();
}

async function cmdRtt(v: Record<string, string | string[] | undefined>): Promise<void> {
  const server = ep((v.server as string[] | undefined)?.[0], '--server');
  const sock = await bindUdp(ep((v.bind as string | undefined) ?? '0.0.0.0:0', '--bind'));
  const count = int(v.count as string | undefined, 20, '--count');
  const interval = int(v['interval-ms'] as string | undefined, 20, '--interval-ms');
  const timeoutMs = int(v['timeout-ms'] as string | undefined, 1000, '--timeout-ms');
  const samples: number[] = [];
  let lost = 0;
  for (let i = 0; i < count; i++) {
    const r = await stunOnce(sock, server, timeoutMs, 1);
    if (r) samples.push(round(r.rttMs));
    else lost++;
    await sleep(interval);
  }
  sock.close();
  const sorted = [...samples].sort((a, b) => a - b);
  const p50 = sorted.length ? sorted[Math.floor(sorted.length / 2)] : null;
  out({ event: 'rtt', samples, lost, min: sorted[0] ?? null, p50, max: sorted.at(-1) ?? null });
}

async function cmdTcpListen(v: Record<string, string | string[] | undefined>): Promise<void> {
  const binds = ((v.bind as string[] | undefined) ?? []).map((b) => ep(b, '--bind'));
  if (binds.length === 0) throw new UsageError('--bind is required');
  const ms = int(v.ms as string | undefined, 0, '--ms');
  const servers: Server[] = [];
  for (const b of binds) {
    const srv = createServer((c) => {
      c.on('error', () => undefined); // clients hang up at once
      c.end('ok\n');
    });
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(b.port, b.ip, () => resolve());
    });
    servers.push(srv);
  }
  out({ event: 'listening', binds: binds.map(fmt) });
  if (ms > 0) {
    await sleep(ms);
    servers.forEach((s) => s.close());
  } else {
    await new Promise(() => undefined); // until killed
  }
}

async function cmdTcpConnect(v: Record<string, string | string[] | undefined>): Promise<void> {
  const tos = ((v.to as string[] | undefined) ?? []).map((t) => ep(t, '--to'));
  if (tos.length === 0) throw new UsageError('--to is required');
  const timeoutMs = int(v['timeout-ms'] as string | undefined, 700, '--timeout-ms');
  await Promise.all(
    tos.map(
      (to) =>
        new Promise<void>((resolve) => {
          const t0 = performance.now();
          const c = connect({ host: to.ip, port: to.port });
          const done = (ok: boolean, why?: string): void => {
            clearTimeout(timer);
            c.destroy();
            out({ event: 'tcp', to: fmt(to), ok, ...(ok ? { ms: round(performance.now() - t0) } : { why }) });
            resolve();
          };
          const timer = setTimeout(() => done(false, 'timeout'), timeoutMs);
          c.once('connect', () => done(true));
          c.once('error', (e: NodeJS.ErrnoException) => done(false, e.code ?? e.message));
        }),
    ),
  );
}

async function cmdPcpMap(v: Record<string, string | string[] | undefined>): Promise<void> {
  const gw = v.gateway as string | undefined;
  if (!gw || !parseEndpoint(`${gw}:1`)) throw new UsageError('--gateway IP is required');
  const internalPort = int(v['internal-port'] as string | undefined, 0, '--internal-port');
  if (internalPort === 0) throw new UsageError('--internal-port is required');
  const externalPort = int(v['external-port'] as string | undefined, internalPort, '--external-port');
  const lifetime = int(v.lifetime as string | undefined, 60, '--lifetime');
  const timeoutMs = int(v['timeout-ms'] as string | undefined, 1000, '--timeout-ms');
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.connect(PORTMAP.serverPort, gw, () => r()));
  const clientIp = sock.address().address;
  const nonce = randomBytes(12);
  const req = pcpMapRequest(clientIp, nonce, internalPort, externalPort, lifetime);
  const res = await new Promise<ReturnType<typeof parsePcpMap>>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), timeoutMs);
    sock.on('message', (msg) => {
      const r = parsePcpMap(msg);
      if (r) {
        clearTimeout(timer);
        resolve(r);
      }
    });
    sock.send(req);
  });
  sock.close();
  if (res) out({ event: 'pcp', clientIp, ...res });
  else out({ event: 'pcp-timeout', gateway: gw });
}

function local(s: Socket): string {
  const a = s.address();
  return `${a.address}:${a.port}`;
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}

const COMMANDS: Record<string, (v: Record<string, string | string[] | undefined>) => Promise<void>> = {
  stun: cmdStun,
  send: cmdSend,
  recv: cmdRecv,
  rtt: cmdRtt,
  'tcp-listen': cmdTcpListen,
  'tcp-connect': cmdTcpConnect,
  'pcp-map': cmdPcpMap,
};

async function main(): Promise<void> {
  const [cmd, ...rest] = process.argv.slice(2);
  const fn = cmd === undefined ? undefined : COMMANDS[cmd];
  try {
    if (!fn) throw new UsageError(`unknown command ${JSON.stringify(cmd)}; one of ${Object.keys(COMMANDS).join(', ')}`);
    const { values } = parseArgs({
      args: rest,
      options: {
        bind: { type: 'string', multiple: cmd === 'tcp-listen' },
        server: { type: 'string', multiple: true },
        to: { type: 'string', multiple: cmd === 'tcp-connect' },
        from: { type: 'string', multiple: true },
        count: { type: 'string' },
        'interval-ms': { type: 'string' },
        'timeout-ms': { type: 'string' },
        tries: { type: 'string' },
        'listen-ms': { type: 'string' },
        ms: { type: 'string' },
        gateway: { type: 'string' },
        'internal-port': { type: 'string' },
        'external-port': { type: 'string' },
        lifetime: { type: 'string' },
      },
      strict: true,
    });
    await fn(values as Record<string, string | string[] | undefined>);
    out({ event: 'done' });
  } catch (e) {
    out({ event: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exitCode = e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? 2 : 1;
  }
}

await main();
