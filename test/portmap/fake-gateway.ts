/**
 * A fake home router for the port-mapper tests: NAT-PMP and PCP on "5351", SSDP on "1900" and a UPnP IGD over
 * "HTTP", as pure functions of (request, from, now) → answer. The core tests call it directly in a discrete-event
 * simulation; the driver tests put it behind real loopback sockets (fake-gateway-net.ts).
 */
import type { AddrPort } from '../../src/internal/addr.js';
import { NatPmpResult, PcpResult } from '../../src/portmap/constants.js';
import { decodeNatPmpRequest, encodeNatPmpResponse } from '../../src/portmap/nat-pmp.js';
import { decodePcpRequest, encodePcpResponse } from '../../src/portmap/pcp.js';
import { childText, descendants, parseXml } from '../../src/portmap/xml.js';

export interface GatewayMapping {
  protocol: 'pmp' | 'pcp' | 'upnp';
  client: string;
  internalPort: number;
  externalPort: number;
  lifetime: number;
  nonce?: string;
}

export interface FakeGatewayOptions {
  ip: string;
  publicIp?: string;
  pmp?: boolean;
  pcp?: boolean;
  upnp?:
    | false
    | {
        service?: 'WANIPConnection:2' | 'WANIPConnection:1' | 'WANPPPConnection:1';
        permanentOnly?: boolean;
        locationHost?: string;
      };
  /** Answer the other protocol's version with "unsupported version" (a single-protocol box does). */
  crossVersion?: boolean;
  httpPort?: number;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

export class FakeGateway {
  readonly ip: string;
  publicIp: string;
  pmp: boolean;
  pcp: boolean;
  upnp: FakeGatewayOptions['upnp'];
  crossVersion: boolean;
  httpPort: number;
  /** Result codes to answer with (0 = success). */
  pmpMapResult = 0;
  pcpAnnounceResult = 0;
  pcpMapResult = 0;
  /** External ports someone else holds (mapping requests for them get another port, or UPnP error 718). */
  readonly taken = new Set<number>();
  /** Stop answering everything (a wedged router). */
  silent = false;
  readonly mappings = new Map<string, GatewayMapping>();
  readonly log: string[] = [];
  private bootAt: number;

  constructor(o: FakeGatewayOptions, now = 0) {
    this.ip = o.ip;
    this.publicIp = o.publicIp ?? '203.0.113.7';
    this.pmp = o.pmp ?? true;
    this.pcp = o.pcp ?? true;
    this.upnp = o.upnp === undefined ? {} : o.upnp;
    this.crossVersion = o.crossVersion ?? false;
    this.httpPort = o.httpPort ?? 5000;
    this.bootAt = now - 3_600_000; // up for an hour
  }

  epoch(now: number): number {
    return Math.floor((now - this.bootAt) / 1000);
  }

  /** Power-cycles the router: the epoch restarts and every mapping is forgotten. */
  reboot(now: number): void {
    this.bootAt = now;
    this.mappings.clear();
  }

  private assign(
    protocol: GatewayMapping['protocol'],
    client: string,
    internalPort: number,
    suggested: number,
  ): number {
    const mine = [...this.mappings.values()].find(
      (m) => m.client === client && m.internalPort === internalPort && m.protocol === protocol,
    );
    if (mine) return mine.externalPort;
    let port = suggested || internalPort;
    while (this.taken.has(port) || [...this.mappings.values()].some((m) => m.externalPort === port))
      port = port >= 65535 ? 1024 : port + 1;
    return port;
  }

  /** A datagram to port 5351. */
  on5351(b: Uint8Array, from: AddrPort, now: number): Uint8Array | undefined {
    if (this.silent || b.length < 2) return undefined;
    const epoch = this.epoch(now);
    if (b[0] === 0) {
      if (!this.pmp) {
        return this.pcp && this.crossVersion
          ? encodePcpResponse({
              opcode: 'announce',
              code: 0,
              resultCode: PcpResult.UNSUPP_VERSION,
              lifetime: 0,
              epoch,
              map: undefined,
            })
          : undefined;
      }
      const req = decodeNatPmpRequest(b);
      this.log.push(
        `pmp ${req.op}${req.op === 'map' ? ` ${req.internalPort}->${req.suggestedExternalPort} ${req.lifetime}s` : ''}`,
      );
      if (req.op === 'public-address')
        return encodeNatPmpResponse({ op: 'public-address', resultCode: 0, epoch, publicIp: this.publicIp });
      const key = `pmp ${from.ip}:${req.internalPort}`;
      if (this.pmpMapResult !== 0)
        return encodeNatPmpResponse({
          op: 'map',
          protocol: 'udp',
          resultCode: this.pmpMapResult,
          epoch,
          internalPort: undefined,
          externalPort: undefined,
          lifetime: undefined,
        });
      if (req.lifetime === 0) {
        this.mappings.delete(key);
        return encodeNatPmpResponse({
          op: 'map',
          protocol: 'udp',
          resultCode: 0,
          epoch,
          internalPort: req.internalPort,
          externalPort: 0,
          lifetime: 0,
        });
      }
      const ext = this.assign('pmp', from.ip, req.internalPort, req.suggestedExternalPort);
      this.mappings.set(key, {
        protocol: 'pmp',
        client: from.ip,
        internalPort: req.internalPort,
        externalPort: ext,
        lifetime: req.lifetime,
      });
      return encodeNatPmpResponse({
        op: 'map',
        protocol: 'udp',
        resultCode: 0,
        epoch,
        internalPort: req.internalPort,
        externalPort: ext,
        lifetime: req.lifetime,
      });
    }
    if (b[0] === 2) {
      if (!this.pcp) {
        if (!this.pmp || !this.crossVersion) return undefined;
        const resultCode = NatPmpResult.UNSUPPORTED_VERSION;
        return b[1] === 1
          ? encodeNatPmpResponse({
              op: 'map',
              protocol: 'udp',
              resultCode,
              epoch,
              internalPort: undefined,
              externalPort: undefined,
              lifetime: undefined,
            })
          : encodeNatPmpResponse({ op: 'public-address', resultCode, epoch, publicIp: undefined });
      }
      const req = decodePcpRequest(b);
      this.log.push(
        `pcp ${req.opcode}${req.opcode === 'map' ? ` ${req.map.internalPort}->${req.map.externalPort} ${req.lifetime}s` : ''}`,
      );
      if (req.opcode === 'announce')
        return encodePcpResponse({
          opcode: 'announce',
          code: 0,
          resultCode: this.pcpAnnounceResult,
          lifetime: 0,
          epoch,
          map: undefined,
        });
      const m = req.map;
      const result = req.clientIp !== from.ip ? PcpResult.ADDRESS_MISMATCH : this.pcpMapResult;
      if (result !== 0)
        return encodePcpResponse({ opcode: 'map', code: 1, resultCode: result, lifetime: 30, epoch, map: m });
      const key = `pcp ${from.ip}:${m.internalPort}`;
      if (req.lifetime === 0) {
        const held = this.mappings.get(key);
        if (held?.nonce === hex(m.nonce)) this.mappings.delete(key);
        return encodePcpResponse({ opcode: 'map', code: 1, resultCode: 0, lifetime: 0, epoch, map: m });
      }
      const ext = this.assign('pcp', from.ip, m.internalPort, m.externalPort);
      this.mappings.set(key, {
        protocol: 'pcp',
        client: from.ip,
        internalPort: m.internalPort,
        externalPort: ext,
        lifetime: req.lifetime,
        nonce: hex(m.nonce),
      });
      return encodePcpResponse({
        opcode: 'map',
        code: 1,
        resultCode: 0,
        lifetime: req.lifetime,
        epoch,
        map: { ...m, externalPort: ext, externalIp: this.publicIp },
      });
    }
    return undefined;
  }

  /** A datagram to port 1900 (an M-SEARCH): zero or more answers. */
  onSsdp(b: Uint8Array): Uint8Array[] {
    if (this.silent || !this.upnp) return [];
    const text = String.fromCharCode(...b);
    if (!text.startsWith('M-SEARCH')) return [];
    this.log.push(`ssdp ${/ST: (.*)\r/.exec(text)?.[1] ?? ''}`);
    const host = this.upnp.locationHost ?? this.ip;
    return [
      ascii(
        `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n` +
          `USN: uuid:fake::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\nSERVER: fake UPnP/1.1 test/1\r\n` +
          `LOCATION: http://${host}:${this.httpPort}/rootDesc.xml\r\n\r\n`,
      ),
    ];
  }

  /** An HTTP request to the IGD. */
  onHttp(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | undefined,
    client: string,
  ): { status: number; body: string } {
    if (this.silent || !this.upnp) return { status: 404, body: '' };
    const service = `urn:schemas-upnp-org:service:${this.upnp.service ?? 'WANIPConnection:1'}`;
    if (method === 'GET' && path === '/rootDesc.xml') {
      this.log.push('http describe');
      return {
        status: 200,
        body:
          '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device><friendlyName>Fake IGD</friendlyName>' +
          '<deviceList><device><deviceList><device><serviceList><service>' +
          `<serviceType>${service}</serviceType><controlURL>/ctl/IPConn</controlURL>` +
          '</service></serviceList></device></deviceList></device></deviceList></device></root>',
      };
    }
    if (method !== 'POST' || path !== '/ctl/IPConn') return { status: 404, body: '' };
    const action = /#(\w+)"?$/.exec(headers.soapaction ?? headers.SOAPAction ?? '')?.[1] ?? '';
    const args = descendants(parseXml(body ?? ''), action)[0];
    const arg = (n: string): string => (args ? (childText(args, n) ?? '') : '');
    this.log.push(
      `soap ${action}${arg('NewExternalPort') ? ` ${arg('NewExternalPort')}` : ''}${arg('NewLeaseDuration') ? ` lease ${arg('NewLeaseDuration')}` : ''}`,
    );
    const ok = (inner = ''): { status: number; body: string } => ({
      status: 200,
      body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action}Response xmlns:u="${service}">${inner}</u:${action}Response></s:Body></s:Envelope>`,
    });
    const fault = (code: number, desc: string): { status: number; body: string } => ({
      status: 500,
      body: `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${desc}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`,
    });
    if (action === 'AddPortMapping' || action === 'AddAnyPortMapping') {
      if (this.upnp.permanentOnly && arg('NewLeaseDuration') !== '0') return fault(725, 'OnlyPermanentLeasesSupported');
      let ext = Number(arg('NewExternalPort'));
      const internalPort = Number(arg('NewInternalPort'));
      const clientArg = arg('NewInternalClient');
      if (clientArg !== client) return fault(606, 'Action not authorized');
      const key = `upnp ${ext}`;
      const held = this.mappings.get(key);
      if (this.taken.has(ext) || (held && held.client !== client)) {
        if (action === 'AddPortMapping') return fault(718, 'ConflictInMappingEntry');
        ext = this.assign('upnp', client, internalPort, ext);
      }
      this.mappings.set(`upnp ${ext}`, {
        protocol: 'upnp',
        client,
        internalPort,
        externalPort: ext,
        lifetime: Number(arg('NewLeaseDuration')),
      });
      return action === 'AddAnyPortMapping' ? ok(`<NewReservedPort>${ext}</NewReservedPort>`) : ok();
    }
    if (action === 'GetExternalIPAddress') return ok(`<NewExternalIPAddress>${this.publicIp}</NewExternalIPAddress>`);
    if (action === 'DeletePortMapping') {
      const key = `upnp ${arg('NewExternalPort')}`;
      if (!this.mappings.has(key)) return fault(714, 'NoSuchEntryInArray');
      this.mappings.delete(key);
      return ok();
    }
    return fault(401, 'Invalid Action');
  }
}
