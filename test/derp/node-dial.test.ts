import { X509Certificate } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { parseDerpMap, type DerpRegion } from '../../src/derp/derp-map.js';
import { checkPinnedCert, nodeTlsOptions, pinnedCertHash } from '../../src/derp/node-dial.js';
import { RegionClient, type RegionState } from '../../src/derp/region-client.js';
import { DerpServer } from '../../src/derp/server/index.js';
import { PrivateKey } from '../../src/key/keys.js';
import { measureHttpLatency } from '../../src/netcheck/http-latency.js';
import { selfSignedCert } from './helpers.js';

const region = (node: Record<string, unknown>): DerpRegion =>
  parseDerpMap({ regions: [{ regionId: 950, regionCode: 'tls', nodes: [node] }] }).regions.get(950)!;

describe('nodeTlsOptions', () => {
  it('uses HostName (or CertName) as the TLS server name, never an IP literal', () => {
    expect(nodeTlsOptions(region({ hostName: 'derp.example' }).nodes[0]!)).toEqual({ servername: 'derp.example' });
    expect(nodeTlsOptions(region({ hostName: '192.0.2.1', certName: 'derp.example' }).nodes[0]!)).toEqual({
      servername: 'derp.example',
    });
    expect(nodeTlsOptions(region({ hostName: '192.0.2.1' }).nodes[0]!)).toEqual({});
    expect(nodeTlsOptions(region({ url: 'http://192.0.2.1:1' }).nodes[0]!)).toEqual({});
  });

  it('InsecureForTests over https turns verification off', () => {
    const n = region({ url: 'https://derp.example', insecureForTests: true }).nodes[0]!;
    expect(nodeTlsOptions(n)).toEqual({ servername: 'derp.example', rejectUnauthorized: false });
  });

  it('a sha256-raw pin relaxes the chain check only for a caller that verifies the pin itself', () => {
    const n = region({ hostName: '192.0.2.1', certName: 'sha256-raw:AB12' }).nodes[0]!;
    expect(pinnedCertHash(n)).toBe('ab12');
    expect(nodeTlsOptions(n)).toEqual({});
    expect(nodeTlsOptions(n, true)).toEqual({ rejectUnauthorized: false });
  });

  it('checkPinnedCert compares the leaf SHA-256', () => {
    const n = region({ hostName: '192.0.2.1', certName: 'sha256-raw:00aa' }).nodes[0]!;
    expect(checkPinnedCert(n, { getPeerCertificate: () => ({ fingerprint256: '00:AA' }) as never })).toBeUndefined();
    expect(checkPinnedCert(n, { getPeerCertificate: () => ({ fingerprint256: '00:AB' }) as never })?.message).toMatch(
      /does not match pinned 00aa/,
    );
    const unpinned = region({ hostName: 'x.example' }).nodes[0]!;
    expect(checkPinnedCert(unpinned, { getPeerCertificate: () => ({}) as never })).toBeUndefined();
  });
});

const cert = selfSignedCert();
const CAN = typeof cert !== 'string';

describe.skipIf(!CAN)(`TLS DERP nodes on loopback${CAN ? '' : ` (skipped: ${String(cert)})`}`, () => {
  // Run: needs the openssl CLI to make a throwaway self-signed certificate.
  const { cert: pem, key } = cert as { cert: string; key: string };
  const fingerprint = new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
  });
  const https = async () => {
    const s = await DerpServer.listen({ host: '127.0.0.1', port: 0, tls: { cert: pem, key } });
    cleanup.push(() => s.close());
    return s;
  };
  const reach = (rc: RegionClient, want: RegionState) =>
    new Promise<void>((resolve) => {
      if (rc.state === want) return resolve();
      rc.on('state', (st) => st.state === want && resolve());
    });
  const rc = (node: Record<string, unknown>, tls?: { ca: string }) => {
    const c = new RegionClient({
      region: region(node),
      privateKey: PrivateKey.generate(),
      backoff: { minMs: 10_000 },
      ...(tls ? { tls } : {}),
    });
    cleanup.push(() => c.close());
    c.start();
    return c;
  };

  it('InsecureForTests with an https URL connects over TLS without verification', async () => {
    const s = await https();
    const c = rc({ url: `https://127.0.0.1:${s.address.port}`, insecureForTests: true });
    await reach(c, 'connected');
    expect(c.status().url).toBe(`https://127.0.0.1:${s.address.port}/derp`);
  });

  it('verifies against a CA given in the region options', async () => {
    const s = await https();
    const c = rc({ url: `https://127.0.0.1:${s.address.port}` }, { ca: pem });
    await reach(c, 'connected');
  });

  it('a pinned self-signed node fails closed on the DERP connection (no unchecked trust)', async () => {
    const s = await https();
    const c = rc({ url: `https://127.0.0.1:${s.address.port}`, certName: `sha256-raw:${fingerprint}` });
    await reach(c, 'backoff');
    expect(c.status().lastError).toMatch(/self[- ]signed|certificate/i);
  });

  it('the HTTPS latency check honours the pin', async () => {
    const s = await https();
    const ok = region({ url: `https://127.0.0.1:${s.address.port}`, certName: `sha256-raw:${fingerprint}` });
    const r = await measureHttpLatency(ok, { signal: new AbortController().signal, timeoutMs: 3000 });
    expect(r).toMatchObject({ family: 4, node: '950a' });
    const bad = region({ url: `https://127.0.0.1:${s.address.port}`, certName: `sha256-raw:${'00'.repeat(32)}` });
    await expect(measureHttpLatency(bad, { signal: new AbortController().signal, timeoutMs: 3000 })).rejects.toThrow(
      /does not match pinned/,
    );
  });
});
