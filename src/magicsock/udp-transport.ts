/**
 * The direct transport: one UDP socket per address family (DESIGN.md decision 2), carrying STUN, disco and data
 * alike so the STUN-observed mapping is the data flow's mapping. Owns the sockets and nothing else; the facade
 * demultiplexes what arrives.
 */
import * as dgram from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';
import { ErrorCode, MeshsockError } from '../errors.js';
import { isIPv6, type AddrPort } from '../internal/addr.js';
import { MAGICSOCK } from './constants.js';

export type Family = 4 | 6;

export interface UdpBindOptions {
  /** Address to bind the IPv4 socket to ('0.0.0.0' for all), or false for no IPv4 socket. */
  v4: string | false;
  /** Address to bind the IPv6 socket to ('::' for all), or false for no IPv6 socket. */
  v6: string | false;
  /** Preferred port for both sockets; 0 picks one. If the v4 port is taken, the bind fails with BIND. */
  port: number;
  bufferBytes: number;
}

export type UdpReceive = (msg: Buffer, ip: string, port: number, family: Family) => void;
export type UdpError = (err: NodeJS.ErrnoException, family: Family) => void;

/**
 * dgram passes every destination through `lookup`; the default (dns.lookup) defers even an IP literal to the next
 * tick, which costs about 1 µs per send (a nextTick, a callback hop, async-id bookkeeping). Every address this
 * transport sends to is an IP literal (AddrPort), so those are answered synchronously and the datagram leaves in the
 * same call; anything else (a host name given as the bind address) still goes to dns.lookup.
 */
function literalLookup(
  hostname: string,
  options: LookupOneOptions | number,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  const family = isIP(hostname);
  if (family !== 0) callback(null, hostname, family);
  else dnsLookup(hostname, options as LookupOneOptions, callback);
}

async function bindOne(
  type: 'udp4' | 'udp6',
  address: string,
  port: number,
  bufferBytes: number,
): Promise<dgram.Socket> {
  const sock = dgram.createSocket({
    type,
    ipv6Only: type === 'udp6',
    recvBufferSize: bufferBytes,
    sendBufferSize: bufferBytes,
    lookup: literalLookup,
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    sock.once('error', onError);
    sock.bind({ address, port, exclusive: true }, () => {
      sock.off('error', onError);
      resolve();
    });
  });
  return sock;
}

export class UdpTransport {
  private sockets: { 4?: dgram.Socket; 6?: dgram.Socket } = {};
  private closed = false;

  private constructor(
    private readonly opts: UdpBindOptions,
    private readonly onReceive: UdpReceive,
    private readonly onError: UdpError,
  ) {}

  static async bind(opts: UdpBindOptions, onReceive: UdpReceive, onError: UdpError): Promise<UdpTransport> {
    const t = new UdpTransport(opts, onReceive, onError);
    await t.open(opts.port);
    return t;
  }

  private async open(port: number): Promise<void> {
    const { v4, v6, bufferBytes } = this.opts;
    if (v4 !== false) {
      try {
        this.attach(4, await bindOne('udp4', v4, port, bufferBytes));
      } catch (cause) {
        throw new MeshsockError(ErrorCode.BIND, `cannot bind UDP ${v4}:${port}: ${(cause as Error).message}`, {
          cause,
        });
      }
    }
    if (v6 !== false) {
      // IPv6 is best effort: a host without it (or without that port free on v6) still works over IPv4. Prefer
      // the same port as IPv4 so the two families' endpoints look alike.
      const want = this.sockets[4]?.address().port ?? port;
      try {
        this.attach(6, await bindOne('udp6', v6, want, bufferBytes));
      } catch {
        try {
          if (want !== 0) this.attach(6, await bindOne('udp6', v6, 0, bufferBytes));
        } catch {
          // No IPv6 on this host.
        }
      }
    }
    if (!this.sockets[4] && !this.sockets[6]) throw new MeshsockError(ErrorCode.BIND, 'no UDP socket could be bound');
  }

  private attach(family: Family, sock: dgram.Socket): void {
    this.sockets[family] = sock;
    sock.on('message', (msg, rinfo) => this.onReceive(msg, rinfo.address, rinfo.port, family));
    sock.on('error', (err) => this.onError(err as NodeJS.ErrnoException, family));
  }

  /** The bound local address of each socket. */
  localAddresses(): AddrPort[] {
    const out: AddrPort[] = [];
    for (const f of [4, 6] as const) {
      const s = this.sockets[f];
      if (s) {
        const a = s.address();
        out.push({ ip: a.address, port: a.port });
      }
    }
    return out;
  }

  port(family: Family): number | undefined {
    return this.sockets[family]?.address().port;
  }

  hasFamily(family: Family): boolean {
    return this.sockets[family] !== undefined;
  }

  /** Hot path: sends without a callback; errors surface through onError. Returns false if no socket fits. */
  send(data: Uint8Array, ip: string, port: number): boolean {
    const s = isIPv6(ip) ? this.sockets[6] : this.sockets[4];
    if (!s) return false;
    s.send(data, port, ip);
    return true;
  }

  /** Slow path: sends and reports the outcome (for pings, where an unreachable error condemns the address). */
  sendChecked(data: Uint8Array, to: AddrPort, done: (err: NodeJS.ErrnoException | null) => void): void {
    const s = isIPv6(to.ip) ? this.sockets[6] : this.sockets[4];
    if (!s) {
      done(Object.assign(new Error('no socket for this address family'), { code: 'EAFNOSUPPORT' }));
      return;
    }
    s.send(data, to.port, to.ip, (err) => done(err));
  }

  /** Closes and re-opens both sockets, on the same ports if possible. */
  async rebind(): Promise<void> {
    const port = this.sockets[4]?.address().port ?? this.sockets[6]?.address().port ?? this.opts.port;
    this.closeSockets();
    try {
      await this.open(port);
    } catch {
      await this.open(0);
    }
  }

  private closeSockets(): void {
    for (const f of [4, 6] as const) {
      const s = this.sockets[f];
      if (!s) continue;
      s.removeAllListeners('message');
      s.on('error', () => {});
      s.close();
    }
    this.sockets = {};
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeSockets();
  }

  /** Default socket buffer size (constants.ts). */
  static readonly DEFAULT_BUFFER = MAGICSOCK.SOCKET_BUFFER_BYTES;
}
