/**
 * The one HTTP request shape the UPnP client needs: a small GET or POST over plain HTTP/1.1 (node:http, no
 * keep-alive agent), a hard cap on the answer's size and a hard deadline: `timeoutMs` bounds the whole request,
 * from connect to the last byte, not only the silences between bytes, so a gateway dribbling one byte at a time
 * cannot keep it alive. When the deadline passes (or the answer grows too large, or the caller aborts) the
 * connection is destroyed, not left open. Resolves with `{ ok, status, body }` or `{ ok: false, error }`; never
 * rejects, so the driver can always feed a result back to the core.
 */
import { request } from 'node:http';
import type { HttpResult } from './types.js';

export interface HttpRequestOptions {
  readonly method: 'GET' | 'POST';
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string | undefined;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** Local address to connect from (the port mapper's LAN address). */
  readonly localAddress?: string;
  readonly signal?: AbortSignal;
}

/** Performs one request. Only `http:` URLs; the caller has checked the host. Never rejects. */
export function httpRequest(o: HttpRequestOptions): Promise<HttpResult> {
  return new Promise<HttpResult>((resolve) => {
    let settled = false;
    let deadline: NodeJS.Timeout | undefined;
    const done = (r: HttpResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(r);
    };
    let url: URL;
    try {
      url = new URL(o.url);
    } catch {
      return done({ ok: false, error: `bad URL ${o.url}` });
    }
    if (url.protocol !== 'http:') return done({ ok: false, error: `not an http: URL: ${o.url}` });
    const body = o.body === undefined ? undefined : Buffer.from(o.body, 'utf8');
    try {
      const req = request(
        {
          host: url.hostname,
          port: url.port === '' ? 80 : Number(url.port),
          path: `${url.pathname}${url.search}`,
          method: o.method,
          agent: false,
          timeout: o.timeoutMs,
          ...(o.localAddress ? { localAddress: o.localAddress } : {}),
          ...(o.signal ? { signal: o.signal } : {}),
          headers: {
            Host: url.host,
            Connection: 'close',
            'User-Agent': 'meshsock-portmap UPnP/1.1',
            ...o.headers,
            ...(body ? { 'Content-Length': String(body.length) } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > o.maxBytes) {
              done({ ok: false, error: `answer larger than ${o.maxBytes} bytes` });
              req.destroy();
              return;
            }
            chunks.push(c);
          });
          res.on('end', () =>
            done({ ok: true, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', (e) => done({ ok: false, error: e.message }));
          res.on('close', () => {
            if (!res.complete) done({ ok: false, error: 'answer cut short' });
          });
        },
      );
      const expire = (): void => {
        done({ ok: false, error: `no answer within ${o.timeoutMs} ms` });
        req.destroy();
      };
      req.on('timeout', expire); // idle: nothing at all for timeoutMs
      deadline = setTimeout(expire, o.timeoutMs); // whole request, however the bytes trickle in
      req.on('error', (e) => done({ ok: false, error: e.message }));
      req.end(body);
    } catch (e) {
      done({ ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  });
}
