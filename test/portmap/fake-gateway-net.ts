/**
 * The FakeGateway behind real loopback sockets: UDP 5351 (NAT-PMP/PCP), UDP 1900 (SSDP) and an HTTP server, all
 * on one 127.x.y.z address picked at random so that parallel test runs do not collide. Loopback only.
 */
import * as dgram from 'node:dgram';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FakeGateway, type FakeGatewayOptions } from './fake-gateway.js';

function randomLoopback(): string {
  const r = (): number => 1 + Math.floor(Math.random() * 254);
  return `127.${r()}.${r()}.${r()}`;
}

async function bindUdp(ip: string, port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, ip, () => {
      s.off('error', reject);
      resolve();
    });
  });
  return s;
}

export class FakeGatewayNet {
  readonly gw: FakeGateway;
  private socks: dgram.Socket[] = [];
  private http: Server | undefined;

  private constructor(gw: FakeGateway) {
    this.gw = gw;
  }

  get ip(): string {
    return this.gw.ip;
  }

  /** Starts the services of `opts` (pmp/pcp on 5351 when either is on, SSDP + HTTP when upnp is on). */
  static async start(opts: Omit<FakeGatewayOptions, 'ip'> = {}): Promise<FakeGatewayNet> {
    for (let attempt = 0; ; attempt++) {
      const net = new FakeGatewayNet(new FakeGateway({ ...opts, ip: randomLoopback() }, performance.now()));
      try {
        await net.open(opts);
        return net;
      } catch (e) {
        await net.close();
        if (attempt > 5) throw e;
      }
    }
  }

  private async open(opts: Omit<FakeGatewayOptions, 'ip'>): Promise<void> {
    const gw = this.gw;
    if (opts.pmp !== false || opts.pcp !== false) {
      const s = await bindUdp(gw.ip, 5351);
      this.socks.push(s);
      s.on('message', (msg, r) => {
        const ans = gw.on5351(new Uint8Array(msg), { ip: r.address, port: r.port }, performance.now());
        if (ans) s.send(ans, r.port, r.address);
      });
    }
    if (opts.upnp !== false) {
      this.http = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
          const r = gw.onHttp(
            req.method ?? '',
            req.url ?? '',
            headers,
            Buffer.concat(chunks).toString(),
            req.socket.remoteAddress ?? '',
          );
          res.writeHead(r.status, { 'Content-Type': 'text/xml' }).end(r.body);
        });
      });
      await new Promise<void>((resolve, reject) => {
        this.http!.once('error', reject);
        this.http!.listen(0, gw.ip, () => resolve());
      });
      gw.httpPort = (this.http.address() as AddressInfo).port;
      const s = await bindUdp(gw.ip, 1900);
      this.socks.push(s);
      s.on('message', (msg, r) => {
        for (const ans of gw.onSsdp(new Uint8Array(msg))) s.send(ans, r.port, r.address);
      });
    }
  }

  async close(): Promise<void> {
    for (const s of this.socks) s.close();
    this.socks = [];
    const h = this.http;
    this.http = undefined;
    if (!h) return;
    h.closeAllConnections();
    await new Promise<void>((resolve) => h.close(() => resolve()));
  }
}
