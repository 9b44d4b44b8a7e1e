/**
 * `meshsock netcheck --bind-address/--bind-port` that cannot be bound (issue 12, item 11): an address that is not
 * an IPv4 address, an address not on this host, a busy port. Each is one line on stderr and a non-zero exit, never
 * a report saying "UDP: false". The DERP map points at a real DerpServer with STUN on loopback.
 */
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { run } from '../../src/cli/netcheck.js';
import { DerpServer } from '../../src/derp/server/index.js';

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function inlineMap(): Promise<string> {
  const s = await DerpServer.listen({ host: '127.0.0.1', port: 0, stunPort: 0 });
  cleanup.push(() => s.close());
  return JSON.stringify({
    Regions: {
      '901': {
        RegionID: 901,
        RegionCode: 'lab1',
        RegionName: 'Lab 1',
        Nodes: [
          {
            Name: '901a',
            RegionID: 901,
            HostName: '127.0.0.1',
            DERPPort: s.address.port,
            STUNPort: s.stunAddress!.port,
            InsecureForTests: true,
          },
        ],
      },
    },
  });
}

async function runCli(argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, {
    stdout: { write: (s: string) => out.push(s) },
    stderr: { write: (s: string) => err.push(s) },
  });
  return { code, out: out.join(''), err: err.join('') };
}

async function busyUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  cleanup.push(() => new Promise<void>((r) => s.close(() => r())));
  return s.address().port;
}

function expectOneLineError(r: { code: number; out: string; err: string }, msg: RegExp): void {
  expect(r.code).not.toBe(0);
  expect(r.out).toBe(''); // no report at all
  expect(r.err).toMatch(/^meshsock netcheck: [^\n]+\n$/);
  expect(r.err).toMatch(msg);
}

describe('meshsock netcheck: a bind that fails is an error, not a report', () => {
  it('an address not on this host (192.0.2.1, TEST-NET-1): one line, exit 1', async () => {
    const map = await inlineMap();
    const r = await runCli(['--derp-map', map, '--bind-address', '192.0.2.1']);
    expectOneLineError(r, /cannot bind UDP 192\.0\.2\.1:0: EADDRNOTAVAIL/);
    expect(r.code).toBe(1);
  });

  it('a busy port, with and without an address: one line, exit 1', async () => {
    const map = await inlineMap();
    const port = await busyUdpPort();
    const r1 = await runCli(['--derp-map', map, '--bind-address', '127.0.0.1', '--bind-port', String(port)]);
    expectOneLineError(r1, new RegExp(`cannot bind UDP 127\\.0\\.0\\.1:${port}: EADDRINUSE`));
    expect(r1.code).toBe(1);
    const r2 = await runCli(['--derp-map', map, '--bind-port', String(port)]);
    expectOneLineError(r2, new RegExp(`cannot bind UDP 0\\.0\\.0\\.0:${port}: EADDRINUSE`));
    expect(r2.code).toBe(1);
  });

  it('not an IPv4 address (999.1.1.1, a name): a usage error, exit 2, nothing looked up', async () => {
    for (const bad of ['999.1.1.1', 'localhost', '::1', '']) {
      const r = await runCli(['--derp-map', '{"Regions":{}}', '--bind-address', bad]);
      expectOneLineError(r, /--bind-address: ".*" is not an IPv4 address/);
      expect(r.code).toBe(2);
    }
  });

  it('as a process: `meshsock netcheck --bind-address 999.1.1.1` exits non-zero with one line', async () => {
    const map = await inlineMap();
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'netcheck', '--derp-map', map, '--bind-address', '999.1.1.1'],
      { cwd: join(import.meta.dirname, '..', '..'), stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(2);
    expect(out).toBe('');
    expect(err).toBe('meshsock netcheck: --bind-address: "999.1.1.1" is not an IPv4 address\n');
  }, 30_000);
});
