import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import { stunQuery } from '../../src/stun/client.js';
import { StunServer } from '../../src/stun/server.js';
import { type OwnedSocketClient, clientOnOwnSocket, freeUdpPort, hasIPv6Loopback } from './helpers.js';

const ipv6 = await hasIPv6Loopback();

describe('client ↔ our StunServer over loopback', () => {
  let server: StunServer | undefined;
  let owned: OwnedSocketClient | undefined;
  afterEach(async () => {
    await owned?.close();
    owned = undefined;
    await server?.close();
    server = undefined;
  });

  it("IPv4 127.0.0.1: a client on a socket it does not own learns that socket's address", async () => {
    server = await StunServer.listen({ host: '127.0.0.1', port: 0 });
    owned = await clientOnOwnSocket('127.0.0.1');
    const r = await owned.client.query(server.address, { timeoutMs: 5000 });
    expect(r.mapped).toEqual(owned.local);
    expect(r.from).toEqual(server.address);
    expect(r.rttMs).toBeGreaterThanOrEqual(0);
    expect(server.stats().answered).toBeGreaterThanOrEqual(1);
  });

  it('IPv4: stunQuery() opens and closes its own socket', async () => {
    server = await StunServer.listen({ host: '127.0.0.1', port: 0 });
    const r = await stunQuery({ server: `127.0.0.1:${server.address.port}`, bindAddress: '127.0.0.1' });
    expect(r.mapped).toEqual(r.local);
    expect(r.server).toEqual(server.address);
  });

  it.skipIf(!ipv6)(
    'IPv6 ::1 (skipped when ::1 cannot be bound; enable IPv6 on lo: sysctl -w net.ipv6.conf.lo.disable_ipv6=0)',
    async () => {
      server = await StunServer.listen({ host: '::1', port: 0 });
      owned = await clientOnOwnSocket('::1');
      const r = await owned.client.query(server.address, { timeoutMs: 5000 });
      expect(r.mapped).toEqual(owned.local);
      expect(r.mapped.ip).toBe('::1');
      const q = await stunQuery({ server: server.address, bindAddress: '::1' });
      expect(q.mapped).toEqual(q.local);
    },
  );

  it('no server listening: the query fails after its retransmissions (STUN) or its deadline (TIMEOUT)', async () => {
    const port = await freeUdpPort();
    owned = await clientOnOwnSocket('127.0.0.1', 5);
    const exhausted = owned.client.query({ ip: '127.0.0.1', port }, { maxTransmissions: 2 });
    await expect(exhausted).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.STUN));
    const deadline = stunQuery({ server: { ip: '127.0.0.1', port }, bindAddress: '127.0.0.1', timeoutMs: 50 });
    await expect(deadline).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.TIMEOUT));
  });

  it('stunQuery honours an AbortSignal', async () => {
    const port = await freeUdpPort();
    const ac = new AbortController();
    const q = stunQuery({ server: { ip: '127.0.0.1', port }, bindAddress: '127.0.0.1', signal: ac.signal });
    ac.abort(); // while it is still binding its socket
    await expect(q).rejects.toSatisfy((e) => isMeshsockError(e, ErrorCode.ABORTED));
  });
});
