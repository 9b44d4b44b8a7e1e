/**
 * HTTP(S) latency to a DERP region, used by netcheck only when UDP is blocked (Tailscale's `measureHTTPSLatency`).
 *
 * Nodes are tried in map order (STUN-only nodes skipped). For the node that connects, only the request itself is
 * timed: the clock starts when the TCP (http) or TLS (https) connection is ready and stops at the response headers,
 * so DNS, TCP and TLS set-up are not counted — one request/response round trip, the best approximation of RTT.
 * A status above 299 (e.g. a MITM proxy's denial) fails the check. At most 8 KiB of body is read.
 */
import * as http from 'node:http';
import * as https from 'node:https';
import type { LookupFunction, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import { isIPv6 } from '../internal/addr.js';
import { derpNodeBaseUrl, nodeLiteralAddress, type DerpNode, type DerpRegion } from '../derp/derp-map.js';
import { checkPinnedCert, nodeTlsOptions } from '../derp/node-dial.js';
import { NETCHECK } from './constants.js';
import type { IpFamily } from './plan.js';

/** A finished latency check. */
export interface HttpLatencyResult {
  readonly ms: number;
  /** Family of the address the check connected to. */
  readonly family: IpFamily;
  readonly node: string;
}

/** Measures one region; rejects when no node answered with a 2xx in time. */
export type HttpLatencyFn = (
  region: DerpRegion,
  opts: { signal: AbortSignal; timeoutMs: number },
) => Promise<HttpLatencyResult>;

function literalLookup(node: DerpNode): LookupFunction | undefined {
  const v4 = nodeLiteralAddress(node, 4);
  const v6 = nodeLiteralAddress(node, 6);
  const ip = v4 ?? v6;
  if (ip === undefined || ip === node.hostName) return undefined;
  return ((_host: string, opts: { all?: boolean }, cb: (...a: unknown[]) => void) => {
    const family = isIPv6(ip) ? 6 : 4;
    if (opts?.all) cb(null, [{ address: ip, family }]);
    else cb(null, ip, family);
  }) as unknown as LookupFunction;
}

function measureNode(node: DerpNode, signal: AbortSignal, timeoutMs: number): Promise<HttpLatencyResult> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${derpNodeBaseUrl(node)}${NETCHECK.LATENCY_CHECK_PATH}`);
    const lookup = literalLookup(node);
    const common: http.RequestOptions = {
      method: 'GET',
      agent: false,
      timeout: timeoutMs,
      signal,
      headers: { connection: 'close' },
      ...(lookup ? { lookup } : {}),
    };
    let t0: number | undefined;
    let settled = false;
    const done = (err: Error | undefined, res?: HttpLatencyResult): void => {
      if (settled) return;
      settled = true;
      if (err) reject(err);
      else resolve(res!);
    };
    const req =
      node.scheme === 'https'
        ? https.request(url, { ...common, ...nodeTlsOptions(node, true) })
        : http.request(url, common);
    req.on('socket', (sock: Socket) => {
      const ready = node.scheme === 'https' ? 'secureConnect' : 'connect';
      const mark = (): void => {
        if (node.scheme === 'https') {
          const pinErr = checkPinnedCert(node, sock as TLSSocket);
          if (pinErr) {
            req.destroy(pinErr);
            return;
          }
        }
        t0 ??= performance.now();
      };
      if (
        (sock as Socket & { connecting?: boolean }).connecting ||
        (node.scheme === 'https' && !(sock as TLSSocket).encrypted)
      )
        sock.once(ready, mark);
      else mark();
    });
    req.on('response', (res) => {
      const ms = performance.now() - (t0 ?? performance.now());
      const family: IpFamily = isIPv6(res.socket.remoteAddress ?? '') ? 6 : 4;
      let read = 0;
      res.on('data', (c: Uint8Array) => {
        read += c.length;
        if (read > NETCHECK.LATENCY_CHECK_MAX_BODY) res.destroy();
      });
      res.on('error', () => undefined);
      if ((res.statusCode ?? 0) > 299) {
        res.resume();
        done(new MeshsockError(ErrorCode.PROTOCOL, `${url.href}: HTTP ${res.statusCode} ${res.statusMessage ?? ''}`));
        return;
      }
      res.on('end', () => done(undefined, { ms, family, node: node.name }));
      res.on('close', () => done(undefined, { ms, family, node: node.name }));
    });
    req.on('timeout', () =>
      req.destroy(new MeshsockError(ErrorCode.TIMEOUT, `${url.href}: no answer in ${timeoutMs} ms`)),
    );
    req.on('error', (err) => done(signal.aborted ? abortError(signal) : err));
    req.end();
  });
}

/** The default HttpLatencyFn: tries the region's DERP nodes in order until one answers. */
export const measureHttpLatency: HttpLatencyFn = async (region, { signal, timeoutMs }) => {
  const deadline = performance.now() + timeoutMs;
  let firstErr: unknown;
  for (const node of region.nodes) {
    if (node.stunOnly) continue;
    const left = deadline - performance.now();
    if (left <= 0 || signal.aborted) break;
    try {
      return await measureNode(node, signal, left);
    } catch (err) {
      firstErr ??= err;
    }
  }
  if (signal.aborted) throw abortError(signal);
  throw (
    firstErr ??
    new MeshsockError(ErrorCode.TIMEOUT, `region ${region.regionId} (${region.regionCode}): no HTTP latency answer`)
  );
};
