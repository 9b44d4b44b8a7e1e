/**
 * Memory per idle DERP client: 10,000 clients log in to one DerpServer and stay idle; the server process's memory
 * (after a full GC) is measured before and after, and divided by the client count. Baseline from the same run: a
 * plain Node TCP server holding the same number of idle sockets (the floor any Node server pays per connection).
 *
 *   npx tsx bench/derp-idle-memory.ts [clients=10000] [per-child=2500]
 *
 * The open-files limit is 20,000 per process and cannot be raised, so the clients live in child processes, a few
 * thousand each; the server runs alone in its own child so that nothing else shares its heap. Target: under 50 KiB
 * per client (RSS).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DerpConn } from '../src/derp/conn.js';
import { DerpServer } from '../src/derp/server/index.js';
import { PrivateKey } from '../src/key/keys.js';

interface Mem {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

function gcAndMeasure(): Mem {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i++) gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers };
}

// ---- children -------------------------------------------------------------------------------------------------

function serveMemRequests(extra: () => Record<string, unknown> = () => ({})): void {
  process.on('message', (m) => {
    if (m === 'mem') process.send!({ mem: gcAndMeasure(), ...extra() });
  });
}

async function childDerpServer(): Promise<void> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port: 0 });
  serveMemRequests(() => ({ clients: s.stats().clients }));
  process.send!({ url: s.url });
  process.on('disconnect', () => void s.close().then(() => process.exit(0)));
}

async function childTcpServer(): Promise<void> {
  const sockets = new Set<Socket>();
  const srv = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  serveMemRequests(() => ({ clients: sockets.size }));
  process.send!({ port: (srv.address() as { port: number }).port });
  process.on('disconnect', () => process.exit(0));
}

async function childClients(kind: string, target: string, count: number): Promise<void> {
  const held: unknown[] = [];
  const one = async (): Promise<void> => {
    if (kind === 'derp')
      held.push(await DerpConn.connect({ url: target, privateKey: PrivateKey.generate(), timeoutMs: 60_000 }));
    else
      held.push(
        await new Promise<Socket>((resolve, reject) => {
          const s = connect(Number(target), '127.0.0.1', () => resolve(s));
          s.once('error', reject);
        }),
      );
  };
  const CONCURRENCY = 100;
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) {
        next++;
        await one();
      }
    }),
  );
  process.send!({ ready: held.length });
  process.on('disconnect', () => process.exit(0));
}

// ---- parent ---------------------------------------------------------------------------------------------------

function spawn(args: string[]): Promise<{ child: ChildProcess; msg: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const child = fork(import.meta.filename, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('message', (msg) => resolve({ child, msg: msg as Record<string, unknown> }));
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`child ${args.join(' ')} exited with ${code}`)));
  });
}

function ask(child: ChildProcess): Promise<{ mem: Mem; clients: number }> {
  return new Promise((resolve) => {
    child.once('message', (m) => resolve(m as { mem: Mem; clients: number }));
    child.send('mem');
  });
}

async function measure(
  kind: 'derp' | 'tcp',
  total: number,
  perChild: number,
): Promise<{ perClient: Mem; clients: number; seconds: number }> {
  const server = await spawn([kind === 'derp' ? 'derp-server' : 'tcp-server']);
  const target = kind === 'derp' ? (server.msg.url as string) : String(server.msg.port);
  await new Promise((r) => setTimeout(r, 500));
  const before = await ask(server.child);
  const t0 = performance.now();
  const children = await Promise.all(
    Array.from({ length: Math.ceil(total / perChild) }, (_, i) =>
      spawn(['clients', kind, target, String(Math.min(perChild, total - i * perChild))]),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 2000)); // let the server settle (handshake garbage, timers)
  const after = await ask(server.child);
  for (const c of children) c.child.disconnect();
  server.child.disconnect();
  const per = (k: keyof Mem): number => (after.mem[k] - before.mem[k]) / after.clients;
  return {
    perClient: {
      rss: per('rss'),
      heapUsed: per('heapUsed'),
      external: per('external'),
      arrayBuffers: per('arrayBuffers'),
    },
    clients: after.clients,
    seconds,
  };
}

async function main(): Promise<void> {
  const total = Number(process.argv[2] ?? 10_000);
  const perChild = Number(process.argv[3] ?? 2_500);
  const tcp = await measure('tcp', total, perChild);
  const derp = await measure('derp', total, perChild);
  const kib = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;
  const line = (name: string, r: typeof tcp): string =>
    `  ${name} ${r.clients} connections: ${kib(r.perClient.rss)} RSS per connection ` +
    `(JS heap ${kib(r.perClient.heapUsed)}, external ${kib(r.perClient.external)}), connected in ${r.seconds.toFixed(1)} s`;
  process.stdout.write(
    `derp-idle-memory (server process, after full GC, per idle connection)\n` +
      `${line('baseline  plain TCP server,', tcp)}\n` +
      `${line('meshsock  DerpServer,      ', derp)}\n` +
      `  ratio     ${(derp.perClient.rss / tcp.perClient.rss).toFixed(2)}× the plain socket; ` +
      `DerpServer ${kib(derp.perClient.rss)} per client (target < 50 KiB)\n`,
  );
}

const [mode, a1, a2, a3] = process.argv.slice(2);
if (mode === 'derp-server') void childDerpServer();
else if (mode === 'tcp-server') void childTcpServer();
else if (mode === 'clients') void childClients(a1!, a2!, Number(a3));
else void main();
