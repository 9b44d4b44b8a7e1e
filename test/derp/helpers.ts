/** Shared helpers for the DERP tests: frame waits, raw (hand-driven) clients and a throwaway TLS certificate. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clientInfoJson } from '../../src/derp/client-handshake.js';
import type { DerpConn } from '../../src/derp/conn.js';
import { DERP } from '../../src/derp/constants.js';
import { decodeFrame, encodeFrame, FrameReader, type Frame } from '../../src/derp/frame.js';
import { openFrom, sealTo } from '../../src/key/box.js';
import { PublicKey, type PrivateKey } from '../../src/key/keys.js';

/** Fail-safe for event waits on loopback: a hang fails the test instead of stalling the run. Not a timing assertion. */
export const WAIT_MS = 10_000;

/** Resolves with the first frame on `conn` that satisfies `pred` (copied, so it outlives the listener). */
export function nextFrame<T extends Frame['type']>(
  conn: DerpConn,
  type: T,
  pred: (f: Extract<Frame, { type: T }>) => boolean = () => true,
): Promise<Extract<Frame, { type: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      conn.off('frame', on);
      reject(new Error(`no ${type} frame within ${WAIT_MS} ms`));
    }, WAIT_MS);
    const on = (f: Frame): void => {
      if (f.type !== type || !pred(f as Extract<Frame, { type: T }>)) return;
      clearTimeout(timer);
      conn.off('frame', on);
      resolve(copy(f) as Extract<Frame, { type: T }>);
    };
    conn.on('frame', on);
  });
}

/** Deep copy of a frame's byte fields. */
export function copy(f: Frame): Frame {
  const o: Record<string, unknown> = { ...f };
  for (const [k, v] of Object.entries(o)) if (v instanceof Uint8Array) o[k] = Uint8Array.from(v);
  return o as Frame;
}

/** Resolves when `conn` emits 'close', with its error. */
export function closed(conn: DerpConn): Promise<Error | undefined> {
  if (conn.closed) return Promise.resolve(undefined);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no close within ${WAIT_MS} ms`)), WAIT_MS);
    conn.once('close', (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

/** Polls `cond` on each event-loop turn until true (fail-safe WAIT_MS). */
export async function until(cond: () => boolean, what = 'condition'): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what} not met within ${WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A self-signed certificate for 127.0.0.1/localhost made with the openssl CLI, or the reason it cannot be made. */
export function selfSignedCert(): { cert: string; key: string } | string {
  let dir: string | undefined;
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    dir = mkdtempSync(join(tmpdir(), 'meshsock-cert-'));
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1,DNS:localhost',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } catch (err) {
    return `openssl unavailable or failed: ${(err as Error).message}`;
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** A hand-driven TCP client: raw bytes in, frames out. */
export class RawClient {
  readonly socket: Socket;
  readonly reader = new FrameReader(DERP.MAX_CLIENT_FRAME);
  private buf = Buffer.alloc(0);
  private upgraded = false;
  headers = '';
  frames: Frame[] = [];
  ended = false;
  private waiters: (() => void)[] = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (c: Buffer) => this.onData(c));
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private onData(c: Buffer): void {
    if (!this.upgraded) {
      this.buf = Buffer.concat([this.buf, c]);
      const end = this.buf.indexOf('\r\n\r\n');
      if (end < 0) {
        this.wake();
        return;
      }
      this.headers = this.buf.subarray(0, end).toString('latin1');
      c = this.buf.subarray(end + 4);
      this.upgraded = true;
    }
    this.reader.push(c);
    try {
      for (let f = this.reader.next(); f; f = this.reader.next()) this.frames.push(copy(f));
    } catch {
      /* hostile tests look at `ended` */
    }
    this.wake();
  }

  /** Waits until `cond()` holds after some input (or the socket closes). */
  async wait(cond: () => boolean, what: string): Promise<void> {
    const end = Date.now() + WAIT_MS;
    while (!cond()) {
      if (this.ended) throw new Error(`socket closed while waiting for ${what}`);
      if (Date.now() > end) throw new Error(`${what} not seen within ${WAIT_MS} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  /** Resolves once the server closed the socket. */
  async waitClosed(): Promise<void> {
    const end = Date.now() + WAIT_MS;
    while (!this.ended) {
      if (Date.now() > end) throw new Error(`socket still open after ${WAIT_MS} ms`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  write(b: Uint8Array | string): void {
    this.socket.write(b);
  }

  /** Sends the DERP upgrade request and waits for the 101 and ServerKey. */
  async upgrade(extraHeaders = ''): Promise<PublicKey> {
    this.write(`GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n${extraHeaders}\r\n`);
    await this.wait(() => this.frames.some((f) => f.type === 'serverKey'), 'ServerKey');
    const sk = this.frames.find((f) => f.type === 'serverKey');
    if (sk?.type !== 'serverKey') throw new Error('no ServerKey');
    return new PublicKey(sk.key);
  }

  /** Upgrade + ClientInfo + ServerInfo by hand; returns the server's key. */
  async login(key: PrivateKey, info: { meshKey?: string } = {}): Promise<PublicKey> {
    const server = await this.upgrade();
    const sealed = sealTo(key, server, new TextEncoder().encode(clientInfoJson(info)));
    this.write(encodeFrame({ type: 'clientInfo', key: key.publicKey.bytes, sealed }));
    await this.wait(() => this.frames.some((f) => f.type === 'serverInfo'), 'ServerInfo');
    const si = this.frames.find((f) => f.type === 'serverInfo');
    if (si?.type !== 'serverInfo') throw new Error('no ServerInfo');
    openFrom(key, server, si.sealed); // throws if the box is wrong
    return server;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export { decodeFrame };
