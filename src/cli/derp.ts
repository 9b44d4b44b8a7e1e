/**
 * `meshsock derp`: runs a DERP relay (wire-compatible with Tailscale DERP v2) with a STUN server beside it.
 * Prints one startup line, then nothing until it is stopped with SIGINT or SIGTERM, when it shuts down cleanly and
 * exits 0. Bad flags give a one-line error and exit code 2.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { DerpServer, type DerpServerOptions } from '../derp/server/index.js';
import { formatAddrPort, parseAddrPort } from '../internal/addr.js';
import { PrivateKey } from '../key/keys.js';

const USAGE = `usage: meshsock derp [options]

Runs a DERP relay server (Tailscale DERP protocol v2) with a STUN server beside it.

options:
  --listen HOST:PORT             address for HTTP(S) (default 127.0.0.1:3340; ":PORT" for every interface)
  --stun-port PORT               UDP port of the STUN server on the same host (default 3478)
  --no-stun                      run no STUN server
  --tls-cert FILE --tls-key FILE serve HTTPS with this PEM certificate and key
  --key-file FILE                the server's node key, created with a new key if missing
                                 (derper-style JSON {"PrivateKey":"privkey:…"} or a bare privkey: line)
  --mesh-psk-file FILE           mesh key: 64 hex digits shared by the nodes of one region
  --mesh-with URL,URL            other nodes of the region to mesh with (needs --mesh-psk-file)
  --verify-client-url URL        admission controller (POST {"NodePublic","Source"} → {"Allow":bool})
  --verify-client-url-fail-open=BOOL
                                 admit clients when the controller cannot be reached (default true)
  --rate-limit BYTES/S           per-client receive limit (mesh peers exempt)
  --rate-burst BYTES             burst for --rate-limit (default: one second's worth; at least 64 KiB + 32)
  -h, --help                     show this help`;

/** Where the command writes, and what stops it (tests pass their own). */
export interface DerpCliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Stops the server like SIGINT would; default: SIGINT / SIGTERM. */
  signal?: AbortSignal;
}

class UsageError extends Error {}

interface Parsed {
  listen: string;
  stunPort: number | false;
  tlsCert?: string;
  tlsKey?: string;
  keyFile?: string;
  meshPskFile?: string;
  meshWith?: string[];
  verifyUrl?: string;
  verifyFailOpen: boolean;
  rateLimit?: number;
  rateBurst?: number;
}

function intArg(v: string, flag: string, min: number, max: number): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} expects a number, got "${v}"`);
  const n = Number(v);
  if (n < min || n > max) throw new UsageError(`${flag} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function boolArg(v: string, flag: string): boolean {
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new UsageError(`${flag} expects true or false, got "${v}"`);
}

/** Parses the flags; throws UsageError with a one-line message. Returns undefined for --help. */
export function parseDerpArgs(argv: string[]): Parsed | undefined {
  const p: Parsed = { listen: '127.0.0.1:3340', stunPort: 3478, verifyFailOpen: true };
  let noStun = false;
  let stunPort: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    const eq = raw.startsWith('--') ? raw.indexOf('=') : -1;
    const flag = eq > 0 ? raw.slice(0, eq) : raw;
    const inline = eq > 0 ? raw.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        return undefined;
      case '--listen':
        p.listen = value();
        break;
      case '--stun-port':
        stunPort = intArg(value(), flag, 0, 65535);
        break;
      case '--no-stun':
        noStun = true;
        break;
      case '--tls-cert':
        p.tlsCert = value();
        break;
      case '--tls-key':
        p.tlsKey = value();
        break;
      case '--key-file':
        p.keyFile = value();
        break;
      case '--mesh-psk-file':
        p.meshPskFile = value();
        break;
      case '--mesh-with':
        p.meshWith = value()
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== '');
        for (const u of p.meshWith) {
          let url: URL;
          try {
            url = new URL(u);
          } catch {
            throw new UsageError(`--mesh-with: "${u}" is not a URL`);
          }
          if (!['http:', 'https:', 'ws:', 'wss:'].includes(url.protocol))
            throw new UsageError(`--mesh-with: "${u}" must be http, https, ws or wss`);
        }
        break;
      case '--verify-client-url': {
        const u = value();
        try {
          if (!['http:', 'https:'].includes(new URL(u).protocol)) throw new Error();
        } catch {
          throw new UsageError(`--verify-client-url: "${u}" is not an http(s) URL`);
        }
        p.verifyUrl = u;
        break;
      }
      case '--verify-client-url-fail-open':
        p.verifyFailOpen = inline === undefined ? true : boolArg(inline, flag);
        break;
      case '--rate-limit':
        p.rateLimit = intArg(value(), flag, 1, Number.MAX_SAFE_INTEGER);
        break;
      case '--rate-burst':
        p.rateBurst = intArg(value(), flag, 1, Number.MAX_SAFE_INTEGER);
        break;
      default:
        throw new UsageError(`unknown option "${raw}" (see --help)`);
    }
  }
  if (noStun && stunPort !== undefined) throw new UsageError('--stun-port and --no-stun contradict each other');
  if (noStun) p.stunPort = false;
  else if (stunPort !== undefined) p.stunPort = stunPort;
  if ((p.tlsCert === undefined) !== (p.tlsKey === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (p.meshWith?.length && p.meshPskFile === undefined) throw new UsageError('--mesh-with needs --mesh-psk-file');
  if (p.rateBurst !== undefined && p.rateLimit === undefined) throw new UsageError('--rate-burst needs --rate-limit');
  return p;
}

function parseListen(s: string): { host: string; port: number } {
  const m = /^:(\d{1,5})$/.exec(s);
  if (m) return { host: '::', port: intArg(m[1]!, '--listen', 0, 65535) };
  try {
    const a = parseAddrPort(s);
    return { host: a.ip, port: a.port };
  } catch {
    throw new UsageError(`--listen expects HOST:PORT (e.g. 127.0.0.1:3340 or [::1]:3340), got "${s}"`);
  }
}

function readFile(path: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(
      `${flag}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
}

function loadKey(path: string): PrivateKey {
  if (!existsSync(path)) {
    const key = PrivateKey.generate();
    try {
      writeFileSync(path, `${JSON.stringify({ PrivateKey: key.toString() }, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new UsageError(
        `--key-file: cannot create ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      );
    }
    return key;
  }
  const text = readFile(path, '--key-file').trim();
  try {
    if (text.startsWith('{')) {
      const v = JSON.parse(text) as { PrivateKey?: unknown };
      if (typeof v.PrivateKey !== 'string') throw new Error('no "PrivateKey" string');
      return PrivateKey.parse(v.PrivateKey);
    }
    return PrivateKey.parse(text);
  } catch (err) {
    throw new UsageError(`--key-file: ${path} holds no private key (${(err as Error).message})`);
  }
}

function buildOptions(p: Parsed): DerpServerOptions {
  const { host, port } = parseListen(p.listen);
  const opts: DerpServerOptions = { host, port, stunPort: p.stunPort };
  if (p.tlsCert !== undefined && p.tlsKey !== undefined)
    opts.tls = { cert: readFile(p.tlsCert, '--tls-cert'), key: readFile(p.tlsKey, '--tls-key') };
  if (p.keyFile !== undefined) opts.privateKey = loadKey(p.keyFile);
  if (p.meshPskFile !== undefined) {
    const psk = readFile(p.meshPskFile, '--mesh-psk-file').trim();
    if (!/^[0-9a-fA-F]{64}$/.test(psk))
      throw new UsageError(`--mesh-psk-file: ${p.meshPskFile} must hold 64 hex digits`);
    opts.meshKey = psk;
    if (p.meshWith) opts.meshWith = p.meshWith;
  }
  if (p.verifyUrl !== undefined) opts.verifyClient = { url: p.verifyUrl, failOpen: p.verifyFailOpen };
  if (p.rateLimit !== undefined) opts.rateLimit = { bytesPerSec: p.rateLimit, burst: p.rateBurst ?? p.rateLimit };
  return opts;
}

/** Runs the command; resolves with the exit code once stopped (0), or at once for --help (0) and bad flags (2). */
export async function run(
  argv: string[],
  io: DerpCliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let opts: DerpServerOptions;
  try {
    const parsed = parseDerpArgs(argv);
    if (parsed === undefined) {
      io.stdout.write(`${USAGE}\n`);
      return 0;
    }
    opts = buildOptions(parsed);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    io.stderr.write(`meshsock derp: ${err.message}\n`);
    return 2;
  }
  let server: DerpServer;
  try {
    server = await DerpServer.listen(opts);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    io.stderr.write(`meshsock derp: cannot listen on ${opts.host}:${opts.port}: ${e.code ?? e.message}\n`);
    return 1;
  }
  const stun = server.stunAddress ? `STUN udp ${formatAddrPort(server.stunAddress)}` : 'no STUN';
  io.stdout.write(`meshsock derp: serving ${server.url} as ${server.publicKey.toString()}, ${stun}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      io.signal?.removeEventListener('abort', stop);
      resolve();
    };
    if (io.signal) {
      if (io.signal.aborted) return stop();
      io.signal.addEventListener('abort', stop, { once: true });
    } else {
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    }
  });
  await server.close();
  return 0;
}
