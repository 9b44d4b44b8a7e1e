/**
 * Client admission (tailscale-protocols.md §2.6). Mesh-key holders are always admitted (the caller checks that
 * first). Otherwise the hook decides:
 *
 * - a function `(req) => boolean | Promise<boolean>`; a throw or rejection denies;
 * - `{ url, failOpen? }`: POST `{"NodePublic":"nodekey:<hex>","Source":"<ip>"}` (Tailscale's
 *   DERPAdmitClientRequest, whose Source is the client's IP address) and expect `{"Allow":bool}` within
 *   DERP.VERIFY_CLIENT_TIMEOUT_MS with a body of at most DERP.VERIFY_CLIENT_MAX_BODY bytes. A transport failure,
 *   timeout, non-2xx status or unreadable body allows the client when `failOpen` (default true, like derper's
 *   --verify-client-url-fail-open) and denies it otherwise.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddrPort } from '../../internal/addr.js';
import type { PublicKey } from '../../key/keys.js';
import { DERP } from '../constants.js';

/** What the admission hook is told about a client. */
export interface AdmissionRequest {
  nodePublic: PublicKey;
  source: AddrPort;
}

/** A function deciding admission, or a URL to ask. */
export type VerifyClient =
  ((req: AdmissionRequest) => boolean | Promise<boolean>) | { url: string; failOpen?: boolean };

/** The decision and why (for diagnostics and stats). */
export interface AdmissionResult {
  allow: boolean;
  reason: 'no-hook' | 'hook' | 'hook-error' | 'url' | 'url-fail-open' | 'url-fail-closed';
  detail?: string;
}

/** Throws TypeError when `v` is neither a function nor `{ url: http(s) }`. */
export function checkVerifyClient(v: unknown): VerifyClient | undefined {
  if (v === undefined) return undefined;
  if (typeof v === 'function') return v as VerifyClient;
  if (typeof v === 'object' && v !== null && typeof (v as { url?: unknown }).url === 'string') {
    const u = new URL((v as { url: string }).url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:')
      throw new TypeError('"verifyClient.url" must be http or https');
    return v as VerifyClient;
  }
  throw new TypeError('"verifyClient" expected a function or { url, failOpen? }');
}

/** Decides whether `req` may connect. Never rejects. */
export async function admit(v: VerifyClient | undefined, req: AdmissionRequest): Promise<AdmissionResult> {
  if (v === undefined) return { allow: true, reason: 'no-hook' };
  if (typeof v === 'function') {
    try {
      return { allow: (await v(req)) === true, reason: 'hook' };
    } catch (err) {
      return { allow: false, reason: 'hook-error', detail: (err as Error)?.message ?? String(err) };
    }
  }
  const failOpen = v.failOpen ?? true;
  try {
    const allow = await postAdmission(v.url, {
      NodePublic: req.nodePublic.toString(),
      Source: req.source.ip,
    });
    return { allow, reason: 'url' };
  } catch (err) {
    return { allow: failOpen, reason: failOpen ? 'url-fail-open' : 'url-fail-closed', detail: (err as Error).message };
  }
}

function postAdmission(url: string, body: { NodePublic: string; Source: string }): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const u = new URL(url);
    const data = Buffer.from(JSON.stringify(body));
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: 'POST',
      agent: false,
      headers: { 'Content-Type': 'application/json', 'Content-Length': String(data.length) },
    });
    const timer = setTimeout(
      () => req.destroy(new Error('admission URL did not answer in time')),
      DERP.VERIFY_CLIENT_TIMEOUT_MS,
    );
    timer.unref();
    const done = (err: Error | undefined, allow?: boolean): void => {
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(allow === true);
    };
    req.on('error', (err) => done(err));
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        done(new Error(`admission URL answered HTTP ${status}`));
        req.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
        if (n > DERP.VERIFY_CLIENT_MAX_BODY) {
          done(new Error(`admission answer over ${DERP.VERIFY_CLIENT_MAX_BODY} bytes`));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      res.on('error', (err) => done(err));
      res.on('end', () => {
        try {
          const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          if (typeof v !== 'object' || v === null) throw new Error('admission answer is not a JSON object');
          const allow = (v as Record<string, unknown>).Allow ?? (v as Record<string, unknown>).allow;
          if (typeof allow !== 'boolean') throw new Error('admission answer has no boolean "Allow"');
          done(undefined, allow);
        } catch (err) {
          done(err as Error);
        }
      });
    });
    req.end(data);
  });
}
