/**
 * An on-path attacker who sees our Binding request (and so its transaction ID) answers it first, from its own port,
 * with an address of its choosing as our "public endpoint" (issue 12, item 9). Real UDP sockets on loopback: the
 * "server" is a socket the test owns, so the test decides when (and whether) the real answer comes.
 */
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { AddrPort } from '../../src/internal/addr.js';
import { decodeBindingRequest, encodeBindingSuccess } from '../../src/stun/message.js';
import { type OwnedSocketClient, clientOnOwnSocket } from './helpers.js';

const sockets: dgram.Socket[] = [];
let owned: OwnedSocketClient | undefined;
afterEach(async () => {
  await owned?.close();
  owned = undefined;
  for (const s of sockets.splice(0)) s.close();
});

async function udp(): Promise<{ sock: dgram.Socket; addr: AddrPort; got: Buffer[] }> {
  const sock = dgram.createSocket('udp4');
  sockets.push(sock);
  const got: Buffer[] = [];
  sock.on('message', (m: Buffer) => got.push(m));
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  return { sock, addr: { ip: '127.0.0.1', port: sock.address().port }, got };
}

const send = (s: dgram.Socket, b: Uint8Array, to: AddrPort) =>
  new Promise<void>((resolve, reject) => s.send(b, to.port, to.ip, (e) => (e ? reject(e) : resolve())));

describe('STUN answers are taken only from the server asked', () => {
  it('a forged Binding success with the right transaction ID from another port is dropped and counted', async () => {
    const server = await udp();
    const attacker = await udp();
    owned = await clientOnOwnSocket('127.0.0.1', 1_000);
    const q = owned.client.query(server.addr, { timeoutMs: 5_000 });
    let settled = false;
    void q.then(
      () => (settled = true),
      () => (settled = true),
    );
    while (server.got.length === 0) await new Promise((r) => setTimeout(r, 5));
    const { txId } = decodeBindingRequest(new Uint8Array(server.got[0]!));

    // The attacker answers first: the right ID, its own "mapped address", sent from its own port (same IP).
    const lie: AddrPort = { ip: '203.0.113.66', port: 6666 };
    await send(attacker.sock, encodeBindingSuccess(txId, lie), owned.local);
    const counters = owned.client.transactions.counters;
    while (counters.get('droppedWrongSource') + counters.get('succeeded') === 0)
      await new Promise((r) => setTimeout(r, 5));
    expect(counters.get('droppedWrongSource')).toBe(1);
    expect(counters.get('succeeded')).toBe(0);
    expect(settled).toBe(false);

    // The real server answers afterwards: that one is taken.
    await send(server.sock, encodeBindingSuccess(txId, owned.local), owned.local);
    const r = await q;
    expect(r.mapped).toEqual(owned.local);
    expect(r.from).toEqual(server.addr);
    expect(counters.get('succeeded')).toBe(1);
  });
});
