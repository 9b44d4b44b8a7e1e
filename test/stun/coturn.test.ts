/**
 * Interoperability with coturn (Debian's coturn 4.6): our client against a real third-party STUN server, and our
 * decoder against its responses. Spawns `turnserver` on a free loopback port and kills it in afterAll.
 * CI installs coturn in .ci/run; locally: apt-get install coturn.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttrType } from '../../src/stun/constants.js';
import { stunQuery } from '../../src/stun/client.js';
import { decodeBindingResponse, decodeMessage, encodeBindingRequest } from '../../src/stun/message.js';
import { type OwnedSocketClient, clientOnOwnSocket, freeUdpPort } from './helpers.js';

function findExecutable(name: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin']) {
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

const turnserver = findExecutable('turnserver');

describe.skipIf(!turnserver)(
  `interop with coturn${turnserver ? '' : ' (skipped: coturn not installed: apt-get install coturn)'}`,
  () => {
    let proc: ChildProcess | undefined;
    let workDir: string | undefined;
    let port = 0;
    let log = '';

    beforeAll(async () => {
      workDir = mkdtempSync(join(tmpdir(), 'meshsock-coturn-'));
      port = await freeUdpPort();
      proc = spawn(
        turnserver!,
        [
          '-n',
          '--stun-only',
          '--listening-ip=127.0.0.1',
          `--listening-port=${port}`,
          '--no-cli',
          '--no-tls',
          '--no-dtls',
          '--no-tcp',
          '--log-file=stdout',
          `--pidfile=${join(workDir, 'turnserver.pid')}`,
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const keep = (d: Buffer): void => {
        log = (log + d.toString()).slice(-4000);
      };
      proc.stdout!.on('data', keep);
      proc.stderr!.on('data', keep);
      // Wait until it answers (or exits): short queries in a loop, 10 s at most.
      const until = Date.now() + 10_000;
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`turnserver exited with ${proc.exitCode}:\n${log}`);
        try {
          await stunQuery({ server: { ip: '127.0.0.1', port }, bindAddress: '127.0.0.1', rtoMs: 20, timeoutMs: 200 });
          return;
        } catch (err) {
          if (Date.now() > until) throw new Error(`turnserver did not answer within 10 s:\n${log}`, { cause: err });
        }
      }
    });

    afterAll(async () => {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = once(proc, 'exit');
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc?.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    });

    it('our client on a socket it does not own gets 127.0.0.1:<our port> from coturn', async () => {
      let owned: OwnedSocketClient | undefined;
      try {
        owned = await clientOnOwnSocket('127.0.0.1');
        const r = await owned.client.query({ ip: '127.0.0.1', port }, { timeoutMs: 5_000 });
        expect(r.mapped).toEqual({ ip: '127.0.0.1', port: owned.local.port });
        expect(r.from).toEqual({ ip: '127.0.0.1', port });
      } finally {
        await owned?.close();
      }
    });

    it("coturn's response to our 40-byte request decodes with XOR-MAPPED-ADDRESS and a valid FINGERPRINT", async () => {
      const sock = dgram.createSocket('udp4');
      try {
        sock.bind(0, '127.0.0.1');
        await once(sock, 'listening');
        const tx = new Uint8Array(12).map((_, i) => 0x30 + i);
        const reply = once(sock, 'message');
        sock.send(encodeBindingRequest(tx), port, '127.0.0.1');
        const [msg] = (await reply) as [Buffer];
        const r = decodeBindingResponse(msg);
        expect(r).toMatchObject({
          kind: 'success',
          txId: tx,
          mapped: { ip: '127.0.0.1', port: sock.address().port },
          mappedAttr: AttrType.XOR_MAPPED_ADDRESS,
        });
        expect(r.software).toMatch(/Coturn/i);
        const m = decodeMessage(msg);
        expect(m.fingerprint).toBe(true);
        expect(m.attrs.some((a) => a.type === AttrType.MAPPED_ADDRESS)).toBe(true);
      } finally {
        sock.close();
      }
    });
  },
);
