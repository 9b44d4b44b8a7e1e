/**
 * The DERP server's plain HTTP endpoints (tailscale-protocols.md §2.1, derper's mux) and its answer to requests that
 * should have been upgrades:
 *
 *   /derp                    without `Upgrade: DERP|websocket` + `Connection: Upgrade` → 426
 *   /derp/probe              GET/HEAD → 200, CORS `*` (HTTPS latency checks)
 *   /derp/latency-check      same
 *   /generate_204            204; echoes X-Tailscale-Challenge as X-Tailscale-Response: "response <challenge>"
 *   /health                  200 JSON {"status":"ok", …gauges}
 *   /metrics                 Prometheus text from the server's own registry
 *   /                        a one-line text page
 *   anything else            404
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';

export interface HttpContext {
  readonly metrics: Registry;
  health(): Record<string, unknown>;
  noteUpgradeRequired(): void;
}

/** derper accepts challenges of at most 64 characters from this set; anything else gets no response header. */
const CHALLENGE_RE = /^[A-Za-z0-9._-]{1,64}$/;

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** Handles every non-upgrade request. */
export function handleHttpRequest(ctx: HttpContext, req: IncomingMessage, res: ServerResponse): void {
  let path: string;
  try {
    path = new URL(req.url ?? '/', 'http://x').pathname;
  } catch {
    send(res, 400, 'bad request\n');
    return;
  }
  const method = req.method ?? 'GET';
  const readOnly = method === 'GET' || method === 'HEAD';
  switch (path) {
    case '/derp':
    case '/derp/':
      ctx.noteUpgradeRequired();
      send(res, 426, 'DERP requires connection upgrade\n', { Connection: 'close' });
      return;
    case '/derp/probe':
    case '/derp/latency-check':
      if (!readOnly) return send(res, 405, 'bogus probe method\n');
      send(res, 200, '', { 'Access-Control-Allow-Origin': '*' });
      return;
    case '/generate_204': {
      const ch = req.headers['x-tailscale-challenge'];
      const headers: Record<string, string> = {};
      if (typeof ch === 'string' && CHALLENGE_RE.test(ch)) headers['X-Tailscale-Response'] = `response ${ch}`;
      res.writeHead(204, headers);
      res.end();
      return;
    }
    case '/health': {
      const body = JSON.stringify({ status: 'ok', ...ctx.health() });
      send(res, 200, body, { 'Content-Type': 'application/json' });
      return;
    }
    case '/metrics':
      if (!readOnly) return send(res, 405, 'method not allowed\n');
      ctx.metrics.metrics().then(
        (text) => send(res, 200, text, { 'Content-Type': ctx.metrics.contentType }),
        () => send(res, 500, 'metrics unavailable\n'),
      );
      return;
    case '/':
      send(res, 200, 'meshsock DERP server (DERP protocol version 2). This is a relay, not a web site.\n');
      return;
    default:
      send(res, 404, 'not found\n');
  }
}
