/**
 * Client side of the DERP transport upgrade (tailscale-protocols.md §2.1), wire-compatible with Tailscale DERP v2.
 *
 *   http(s)://host[:port]/derp   GET /derp HTTP/1.1
 *                                Upgrade: DERP
 *                                Connection: Upgrade
 *                                → HTTP/1.1 101 Switching Protocols   (Derp-Version: 2, Derp-Public-Key: <64 hex>)
 *                                then DERP frames on the same socket; the server may send its ServerKey frame in the
 *                                same TCP segment as the 101, so bytes after the headers are returned as `head`.
 *   ws(s)://host[:port]/derp     WebSocket upgrade with Sec-WebSocket-Protocol: derp; binary messages carry the
 *                                DERP byte stream, message boundaries need not match frames.
 *
 * Any other status (426 from a server that saw no upgrade, 404, 5xx) is DERP_CONNECT with the status in the message.
 */
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import { parseIPv4, parseIPv6 } from '../internal/addr.js';
import { DERP } from './constants.js';
import { SocketStream, WebSocketStream, type ByteStream } from './stream.js';

/** Result of a successful upgrade. */
export interface DialResult {
  stream: ByteStream;
  /** Bytes that arrived after the 101 headers (the start of the DERP stream). */
  head: Uint8Array;
  /** The server key from the `Derp-Public-Key` header, when the server sent one (64 hex). */
  serverKeyHeader: string | undefined;
}

export interface DialOptions {
  url: string;
  signal: AbortSignal;
  tls?: ConnectionOptions | undefined;
}

/** Which transport a DERP URL asks for. Throws TypeError for anything but http, https, ws, wss. */
export function parseDerpUrl(url: string): { url: URL; secure: boolean; websocket: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`"url" is not a URL: ${JSON.stringify(url)}`);
  }
  const scheme = u.protocol;
  if (scheme !== 'http:' && scheme !== 'https:' && scheme !== 'ws:' && scheme !== 'wss:')
    throw new TypeError(`"url" must be http, https, ws or wss, got ${scheme}`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/derp';
  return { url: u, secure: scheme === 'https:' || scheme === 'wss:', websocket: scheme === 'ws:' || scheme === 'wss:' };
}

function hostnameOf(u: URL): string {
  const h = u.hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

function isIpLiteral(h: string): boolean {
  return parseIPv4(h) !== undefined || parseIPv6(h) !== undefined;
}

function connectError(msg: string, cause?: unknown): MeshsockError {
  return new MeshsockError(ErrorCode.DERP_CONNECT, msg, { cause });
}

/** Opens the transport and performs the upgrade. Rejects with DERP_CONNECT or ABORTED (when `signal` fires). */
export function dialDerp(opts: DialOptions): Promise<DialResult> {
  const { url, secure, websocket } = parseDerpUrl(opts.url);
  if (opts.signal.aborted) return Promise.reject(abortReason(opts.signal));
  return websocket ? dialWebSocket(url, secure, opts) : dialHttp(url, secure, opts);
}

function abortReason(signal: AbortSignal): Error {
  return signal.reason instanceof MeshsockError ? signal.reason : abortError(signal);
}

function dialHttp(u: URL, secure: boolean, opts: DialOptions): Promise<DialResult> {
  return new Promise<DialResult>((resolve, reject) => {
    const host = hostnameOf(u);
    const tlsOpts: ConnectionOptions = secure
      ? { ...(isIpLiteral(host) ? {} : { servername: host }), ...opts.tls }
      : {};
    const req: ClientRequest = (secure ? httpsRequest : httpRequest)({
      ...tlsOpts,
      host,
      port: u.port === '' ? (secure ? 443 : 80) : Number(u.port),
      path: u.pathname + u.search,
      method: 'GET',
      agent: false,
      headers: { Upgrade: 'DERP', Connection: 'Upgrade', 'User-Agent': 'meshsock' },
      maxHeaderSize: DERP.MAX_UPGRADE_HEADER,
    });
    let settled = false;
    const onAbort = (): void => {
      fail(abortReason(opts.signal));
    };
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      req.destroy();
      reject(err);
    };
    opts.signal.addEventListener('abort', onAbort, { once: true });
    req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      if (settled) {
        socket.destroy();
        return;
      }
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      socket.setNoDelay(true);
      const key = res.headers['derp-public-key'];
      resolve({ stream: new SocketStream(socket), head, serverKeyHeader: typeof key === 'string' ? key : undefined });
    });
    req.on('response', (res: IncomingMessage) => {
      res.resume();
      fail(connectError(`DERP upgrade refused: HTTP ${res.statusCode ?? '?'} ${res.statusMessage ?? ''}`.trim()));
    });
    req.on('error', (err: Error) => {
      fail(opts.signal.aborted ? abortReason(opts.signal) : connectError(`DERP dial ${u.host}: ${err.message}`, err));
    });
    req.end();
  });
}

function dialWebSocket(u: URL, secure: boolean, opts: DialOptions): Promise<DialResult> {
  return new Promise<DialResult>((resolve, reject) => {
    const host = hostnameOf(u);
    const ws = new WebSocket(u.toString(), [DERP.WS_SUBPROTOCOL], {
      perMessageDeflate: false,
      maxPayload: DERP.WS_MAX_MESSAGE,
      maxRedirects: 0,
      headers: { 'User-Agent': 'meshsock' },
      ...(secure ? { ...(isIpLiteral(host) ? {} : { servername: host }), ...opts.tls } : {}),
    });
    ws.binaryType = 'nodebuffer';
    let socket: Socket | undefined;
    let serverKeyHeader: string | undefined;
    let settled = false;
    const onAbort = (): void => fail(abortReason(opts.signal));
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      ws.terminate();
      reject(err);
    };
    opts.signal.addEventListener('abort', onAbort, { once: true });
    ws.on('upgrade', (res: IncomingMessage) => {
      socket = res.socket;
      const key = res.headers['derp-public-key'];
      if (typeof key === 'string') serverKeyHeader = key;
    });
    ws.on('unexpected-response', (_req: ClientRequest, res: IncomingMessage) => {
      res.resume();
      fail(connectError(`DERP websocket upgrade refused: HTTP ${res.statusCode ?? '?'}`));
    });
    ws.on('error', (err: Error) => {
      fail(
        opts.signal.aborted ? abortReason(opts.signal) : connectError(`DERP websocket ${u.host}: ${err.message}`, err),
      );
    });
    ws.on('open', () => {
      if (settled) return;
      if (ws.protocol !== DERP.WS_SUBPROTOCOL) {
        fail(connectError(`DERP websocket: server chose subprotocol "${ws.protocol}"`));
        return;
      }
      settled = true;
      opts.signal.removeEventListener('abort', onAbort);
      ws.removeAllListeners('error');
      ws.removeAllListeners('unexpected-response');
      socket?.setNoDelay(true);
      // The stream holds messages that arrive before its owner sets handlers, so `head` is always empty here.
      resolve({ stream: new WebSocketStream(ws, socket), head: new Uint8Array(0), serverKeyHeader });
    });
  });
}
