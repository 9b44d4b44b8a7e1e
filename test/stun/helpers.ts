/** Loopback helpers for the STUN integration tests: a client on a socket we own, as MagicSocket will run it. */
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import type { AddrPort } from '../../src/internal/addr.js';
import { normalizeIp } from '../../src/internal/addr.js';
import { StunClient } from '../../src/stun/client.js';
import { isStun } from '../../src/stun/message.js';

export interface OwnedSocketClient {
  client: StunClient;
  local: AddrPort;
  /** Datagrams that were not STUN (would go to disco / the application). */
  other: number;
  close(): Promise<void>;
}

/** Binds a UDP socket on `host`, demultiplexes STUN to a StunClient exactly like the virtual socket does. */
export async function clientOnOwnSocket(host: string, rtoMs = 100): Promise<OwnedSocketClient> {
  const sock = dgram.createSocket(host.includes(':') ? { type: 'udp6', ipv6Only: true } : { type: 'udp4' });
  const client = new StunClient({ send: (b, to) => sock.send(b, to.port, to.ip), rtoMs });
  const self: OwnedSocketClient = {
    client,
    local: { ip: host, port: 0 },
    other: 0,
    async close() {
      client.close();
      sock.close();
      await once(sock, 'close');
    },
  };
  sock.on('message', (msg, rinfo) => {
    if (isStun(msg)) client.handlePacket(msg, { ip: normalizeIp(rinfo.address), port: rinfo.port });
    else self.other++;
  });
  sock.bind(0, host);
  await once(sock, 'listening');
  self.local = { ip: normalizeIp(sock.address().address), port: sock.address().port };
  return self;
}

/** True when a UDP socket can bind ::1 on this host. */
export async function hasIPv6Loopback(): Promise<boolean> {
  const s = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  try {
    s.bind(0, '::1');
    await Promise.race([once(s, 'listening'), once(s, 'error').then(([e]) => Promise.reject(e))]);
    return true;
  } catch {
    return false;
  } finally {
    s.close();
  }
}

/** A UDP port that was free a moment ago on `host`. */
export async function freeUdpPort(host = '127.0.0.1'): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.bind(0, host);
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}
