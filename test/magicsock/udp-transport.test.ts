import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { UdpTransport } from '../../src/magicsock/udp-transport.js';

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function transport(v4: string | false, v6: string | false = false) {
  const got: Array<{ text: string; ip: string; port: number; family: number }> = [];
  const t = await UdpTransport.bind(
    { v4, v6, port: 0, bufferBytes: 1 << 20 },
    (msg, ip, port, family) => got.push({ text: msg.toString(), ip, port, family }),
    () => {},
  );
  closers.push(() => t.close());
  return { t, got };
}

async function rawSocket(type: 'udp4' | 'udp6', host: string) {
  const s = dgram.createSocket(type);
  await new Promise<void>((resolve) => s.bind(0, host, () => resolve()));
  closers.push(() => s.close());
  const got: string[] = [];
  s.on('message', (m) => got.push(m.toString()));
  return { s, got };
}

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe('UdpTransport', () => {
  it('sends to an IP literal in the same call: no deferral to the next tick (no dns.lookup round)', async () => {
    const { t } = await transport('127.0.0.1');
    const r = await rawSocket('udp4', '127.0.0.1');
    const orig = process.nextTick;
    let deferred = 0;
    process.nextTick = ((...args: Parameters<typeof process.nextTick>) => {
      deferred++;
      return orig(...args);
    }) as typeof process.nextTick;
    try {
      for (let i = 0; i < 10; i++) expect(t.send(Buffer.from(`m${i}`), '127.0.0.1', r.s.address().port)).toBe(true);
    } finally {
      process.nextTick = orig;
    }
    expect(deferred).toBe(0);
    await until(() => r.got.length === 10);
    expect(r.got).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
  });

  it('receives with the sender address and family', async () => {
    const { t, got } = await transport('127.0.0.1');
    const r = await rawSocket('udp4', '127.0.0.1');
    r.s.send('hello', t.port(4)!, '127.0.0.1');
    await until(() => got.length === 1);
    expect(got).toEqual([{ text: 'hello', ip: '127.0.0.1', port: r.s.address().port, family: 4 }]);
  });

  it('still resolves a host name given as the bind address (falls back to dns.lookup)', async () => {
    const { t } = await transport('localhost');
    expect(t.localAddresses()[0]!.ip).toBe('127.0.0.1');
  });

  it('sends to IPv6 literals on the IPv6 socket (skipped at run time when ::1 cannot be bound)', async (ctx) => {
    let r6: Awaited<ReturnType<typeof rawSocket>>;
    try {
      r6 = await rawSocket('udp6', '::1');
    } catch {
      ctx.skip(); // no IPv6 on this host; run on a host with ::1 to cover this
      return;
    }
    const { t } = await transport(false, '::1');
    expect(t.send(Buffer.from('six'), '::1', r6.s.address().port)).toBe(true);
    await until(() => r6.got.length === 1);
    expect(r6.got).toEqual(['six']);
    expect(t.send(Buffer.from('four'), '127.0.0.1', 9)).toBe(false); // no IPv4 socket
  });
});
