import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { DerpConn } from '../../../src/derp/conn.js';
import { admit, checkVerifyClient } from '../../../src/derp/server/admission.js';
import { DerpServer } from '../../../src/derp/server/index.js';
import { ErrorCode, isMeshsockError } from '../../../src/errors.js';
import { PrivateKey } from '../../../src/key/keys.js';

const src = { ip: '127.0.0.1', port: 40000 };
let httpServers: Server[] = [];
afterEach(async () => {
  for (const s of httpServers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
  httpServers = [];
});

/** A local admission controller; records each request body. */
async function controller(
  handler: (body: string, res: ServerResponse, req: IncomingMessage) => void,
): Promise<{ url: string; bodies: string[] }> {
  const bodies: string[] = [];
  const srv = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      bodies.push(body);
      handler(body, res, req);
    });
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  httpServers.push(srv);
  const a = srv.address();
  if (a === null || typeof a === 'string') throw new Error('no port');
  return { url: `http://127.0.0.1:${a.port}/verify`, bodies };
}

describe('admission hook', () => {
  it('takes a sync or async function; a throw denies', async () => {
    const key = PrivateKey.generate().publicKey;
    expect(await admit(undefined, { nodePublic: key, source: src })).toEqual({ allow: true, reason: 'no-hook' });
    expect((await admit(() => true, { nodePublic: key, source: src })).allow).toBe(true);
    expect((await admit(async () => false, { nodePublic: key, source: src })).allow).toBe(false);
    const seen: unknown[] = [];
    await admit(
      (req) => {
        seen.push(req);
        return true;
      },
      { nodePublic: key, source: src },
    );
    expect(seen).toEqual([{ nodePublic: key, source: src }]);
    const thrown = await admit(
      () => {
        throw new Error('boom');
      },
      { nodePublic: key, source: src },
    );
    expect(thrown).toEqual({ allow: false, reason: 'hook-error', detail: 'boom' });
  });

  it('POSTs Tailscale\'s DERPAdmitClientRequest and follows {"Allow":bool}', async () => {
    const key = PrivateKey.generate().publicKey;
    const c = await controller((body, res, req) => {
      expect(req.method).toBe('POST');
      expect(req.headers['content-type']).toBe('application/json');
      const allow = (JSON.parse(body) as { NodePublic: string }).NodePublic === key.toString();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ Allow: allow }));
    });
    expect(await admit({ url: c.url }, { nodePublic: key, source: src })).toEqual({ allow: true, reason: 'url' });
    expect(JSON.parse(c.bodies[0]!)).toEqual({ NodePublic: key.toString(), Source: '127.0.0.1' });
    const other = PrivateKey.generate().publicKey;
    expect((await admit({ url: c.url, failOpen: true }, { nodePublic: other, source: src })).allow).toBe(false);
  });

  it('fails open by default and closed when asked, on errors, bad bodies and oversize answers', async () => {
    const key = PrivateKey.generate().publicKey;
    const err500 = await controller((_b, res) => {
      res.writeHead(500);
      res.end();
    });
    const garbage = await controller((_b, res) => {
      res.writeHead(200);
      res.end('not json');
    });
    const huge = await controller((_b, res) => {
      res.writeHead(200);
      res.end(JSON.stringify({ Allow: false, pad: 'x'.repeat(10_000) }));
    });
    for (const url of [err500.url, garbage.url, huge.url, 'http://127.0.0.1:1/verify']) {
      expect((await admit({ url }, { nodePublic: key, source: src })).reason).toBe('url-fail-open');
      expect((await admit({ url }, { nodePublic: key, source: src })).allow).toBe(true);
      expect(await admit({ url, failOpen: false }, { nodePublic: key, source: src })).toMatchObject({
        allow: false,
        reason: 'url-fail-closed',
      });
    }
  });

  it('rejects a malformed hook option', () => {
    expect(() => checkVerifyClient({ url: 'ftp://x' })).toThrow(TypeError);
    expect(() => checkVerifyClient(42)).toThrow(TypeError);
    expect(checkVerifyClient(undefined)).toBeUndefined();
  });

  it('a live server admits or denies through the URL; the client sees DERP_DENIED', async () => {
    const allowed = PrivateKey.generate();
    const c = await controller((body, res) => {
      res.writeHead(200);
      res.end(
        JSON.stringify({
          Allow: (JSON.parse(body) as { NodePublic: string }).NodePublic === allowed.publicKey.toString(),
        }),
      );
    });
    const s = await DerpServer.listen({ verifyClient: { url: c.url, failOpen: false } });
    try {
      const ok = await DerpConn.connect({ url: s.url, privateKey: allowed });
      const err = await DerpConn.connect({ url: s.url, privateKey: PrivateKey.generate() }).catch((e: unknown) => e);
      expect(isMeshsockError(err, ErrorCode.DERP_DENIED)).toBe(true);
      expect(s.stats().counters.denied).toBe(1);
      expect(s.stats().clients).toBe(1);
      ok.close();
    } finally {
      await s.close();
    }
  });
});
