import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseDerpArgs, run } from '../../src/cli/derp.js';
import { DerpConn } from '../../src/derp/conn.js';
import { PrivateKey } from '../../src/key/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'meshsock-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture(): {
  io: { stdout: { write(s: string): boolean }; stderr: { write(s: string): boolean } };
  out: string[];
  err: string[];
} {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (s: string) => out.push(s) > 0 }, stderr: { write: (s: string) => err.push(s) > 0 } },
    out,
    err,
  };
}

describe('meshsock derp flags', () => {
  it('has derper-like defaults', () => {
    expect(parseDerpArgs([])).toEqual({ listen: '127.0.0.1:3340', stunPort: 3478, verifyFailOpen: true });
    expect(
      parseDerpArgs([
        '--no-stun',
        '--verify-client-url',
        'http://127.0.0.1:9/v',
        '--verify-client-url-fail-open=false',
      ]),
    ).toMatchObject({
      stunPort: false,
      verifyUrl: 'http://127.0.0.1:9/v',
      verifyFailOpen: false,
    });
    expect(parseDerpArgs(['--mesh-psk-file', 'f', '--mesh-with', 'http://a:1/derp, https://b/derp'])?.meshWith).toEqual(
      ['http://a:1/derp', 'https://b/derp'],
    );
    expect(parseDerpArgs(['--help'])).toBeUndefined();
  });

  it('prints --help and exits 0', async () => {
    const c = capture();
    expect(await run(['--help'], c.io)).toBe(0);
    expect(c.out.join('')).toContain('usage: meshsock derp');
  });

  const bad: [string[], RegExp][] = [
    [['--bogus'], /unknown option "--bogus"/],
    [['--listen', 'nowhere'], /--listen expects HOST:PORT/],
    [['--listen'], /--listen needs a value/],
    [['--stun-port', 'abc'], /--stun-port expects a number/],
    [['--stun-port', '70000'], /between 0 and 65535/],
    [['--stun-port', '1', '--no-stun'], /contradict/],
    [['--tls-cert', 'c.pem'], /--tls-cert and --tls-key go together/],
    [['--mesh-with', 'http://a/derp'], /--mesh-with needs --mesh-psk-file/],
    [['--mesh-psk-file', 'x', '--mesh-with', 'ftp://a'], /must be http, https, ws or wss/],
    [['--verify-client-url', 'nope'], /not an http\(s\) URL/],
    [['--verify-client-url-fail-open=maybe'], /expects true or false/],
    [['--rate-burst', '10'], /--rate-burst needs --rate-limit/],
    [['--rate-limit', '-5'], /--rate-limit expects a number/],
    [['--mesh-psk-file', '/nonexistent/psk'], /--mesh-psk-file: cannot read/],
    [['--tls-cert', '/nonexistent/c', '--tls-key', '/nonexistent/k'], /--tls-cert: cannot read/],
  ];
  for (const [argv, msg] of bad) {
    it(`exits 2 with one line for ${argv.join(' ')}`, async () => {
      const c = capture();
      expect(await run(argv, c.io)).toBe(2);
      const text = c.err.join('');
      expect(text).toMatch(msg);
      expect(text.trimEnd().split('\n')).toHaveLength(1);
      expect(text.startsWith('meshsock derp: ')).toBe(true);
    });
  }

  it('rejects a mesh PSK file that is not 64 hex digits', async () => {
    const f = join(dir, 'bad-psk');
    writeFileSync(f, 'xyz\n');
    const c = capture();
    expect(await run(['--mesh-psk-file', f], c.io)).toBe(2);
    expect(c.err.join('')).toMatch(/must hold 64 hex digits/);
  });
});

describe('meshsock derp running', () => {
  it('prints one startup line, serves, keeps its key file, and stops cleanly when told', async () => {
    const keyFile = join(dir, 'derper.key');
    const urls: string[] = [];
    for (let round = 0; round < 2; round++) {
      const c = capture();
      const ctl = new AbortController();
      const done = run(['--listen', '127.0.0.1:0', '--stun-port', '0', '--key-file', keyFile], {
        ...c.io,
        signal: ctl.signal,
      });
      while (c.out.length === 0) await new Promise((r) => setTimeout(r, 10));
      const line = c.out.join('');
      expect(line.trimEnd().split('\n')).toHaveLength(1);
      const m = /serving (http:\/\/127\.0\.0\.1:\d+\/derp) as (nodekey:[0-9a-f]{64}), STUN udp 127\.0\.0\.1:\d+/.exec(
        line,
      );
      expect(m, line).not.toBeNull();
      urls.push(m![2]!);
      const conn = await DerpConn.connect({ url: m![1]!, privateKey: PrivateKey.generate() });
      expect(conn.serverKey.toString()).toBe(m![2]);
      conn.close();
      ctl.abort();
      expect(await done).toBe(0);
    }
    expect(urls[0]).toBe(urls[1]); // the key file was created once and reused
    const stored = JSON.parse(readFileSync(keyFile, 'utf8')) as { PrivateKey: string };
    expect(PrivateKey.parse(stored.PrivateKey).publicKey.toString()).toBe(urls[0]);
  });

  it('as a process: prints the startup line and exits 0 on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'derp', '--listen', '127.0.0.1:0', '--no-stun'],
      {
        cwd: join(import.meta.dirname, '..', '..'),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const end = Date.now() + 20_000;
    while (!out.includes('\n')) {
      if (Date.now() > end) throw new Error(`no startup line; stderr: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(out).toMatch(/serving http:\/\/127\.0\.0\.1:\d+\/derp as nodekey:[0-9a-f]{64}, no STUN/);
    const url = /(http:\/\/\S+\/derp)/.exec(out)![1]!;
    const conn = await DerpConn.connect({ url, privateKey: PrivateKey.generate() });
    conn.close();
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(err).toBe('');
  });
});
