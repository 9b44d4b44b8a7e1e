/**
 * UPnP Internet Gateway Device: the device description (which WAN connection service to use and its control URL)
 * and the SOAP calls on it. Pure functions over strings; the driver does the HTTP.
 *
 * Device description (fetched from the SSDP LOCATION; trimmed to what we read):
 *
 *   <root xmlns="urn:schemas-upnp-org:device-1-0">
 *     <URLBase>http://192.168.1.1:5000</URLBase>                       optional; else relative to LOCATION
 *     <device> InternetGatewayDevice
 *       <deviceList><device> WANDevice
 *         <deviceList><device> WANConnectionDevice
 *           <serviceList><service>
 *             <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
 *             <controlURL>/ctl/IPConn</controlURL>                      POST SOAP calls here
 *
 * Preference (tailscale-protocols.md §5): WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1, then any
 * other version of either. Services are collected wherever they appear in the tree, because real gateways nest
 * them inconsistently.
 *
 * SOAP request (POST to the control URL; `SOAPAction: "<serviceType>#<action>"`):
 *
 *   <?xml version="1.0"?>
 *   <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
 *               s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
 *     <s:Body><u:AddPortMapping xmlns:u="<serviceType>">
 *       <NewRemoteHost></NewRemoteHost><NewExternalPort>41641</NewExternalPort> …   arguments in the spec's order
 *     </u:AddPortMapping></s:Body></s:Envelope>
 *
 * Answer: `<u:<action>Response>` with output arguments, or HTTP 500 with
 * `<s:Fault>…<detail><UPnPError><errorCode>725</errorCode><errorDescription>…` .
 */
import { DecodeError } from '../errors.js';
import { UPNP } from './constants.js';
import { childText, descendants, escapeXml, parseXml } from './xml.js';

/** A WAN connection service we can map ports with. */
export interface IgdService {
  readonly serviceType: string;
  readonly kind: 'WANIPConnection' | 'WANPPPConnection';
  readonly version: number;
  /** Absolute http: URL for SOAP calls. */
  readonly controlUrl: string;
}

/** What we read from a device description. */
export interface IgdDescription {
  readonly friendlyName: string | undefined;
  /** Usable services, best first. */
  readonly services: readonly IgdService[];
}

const SERVICE_TYPE = /^urn:schemas-upnp-org:service:(WANIPConnection|WANPPPConnection):(\d{1,3})$/;

function rank(s: IgdService): number {
  if (s.kind === 'WANIPConnection' && s.version === 2) return 0;
  if (s.kind === 'WANIPConnection' && s.version === 1) return 1;
  if (s.kind === 'WANPPPConnection' && s.version === 1) return 2;
  return s.kind === 'WANIPConnection' ? 3 : 4;
}

function httpUrl(u: string, base?: string): URL | undefined {
  try {
    const url = base === undefined ? new URL(u) : new URL(u, base);
    return url.protocol === 'http:' ? url : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Reads a device description fetched from `location`. Throws DecodeError when the document has no usable WAN
 * connection service (no WANIPConnection/WANPPPConnection with a valid http control URL).
 */
export function parseIgdDescription(xml: string, location: string): IgdDescription {
  const loc = httpUrl(location);
  if (!loc) throw new DecodeError('upnp/description', `location ${location} is not an http URL`, 0);
  const doc = parseXml(xml);
  const root = doc.children.find((c) => c.name.toLowerCase() === 'root') ?? doc;
  const urlBase = childText(root, 'URLBase');
  const base = (urlBase && httpUrl(urlBase)?.href) || loc.href;
  const services: IgdService[] = [];
  const seen = new Set<string>();
  for (const svc of descendants(root, 'service')) {
    const type = childText(svc, 'serviceType') ?? '';
    const m = SERVICE_TYPE.exec(type);
    const ctl = childText(svc, 'controlURL');
    if (!m || !ctl) continue;
    const url = httpUrl(ctl, base);
    if (!url) continue;
    const key = `${type} ${url.href}`;
    if (seen.has(key)) continue;
    seen.add(key);
    services.push({
      serviceType: type,
      kind: m[1] as IgdService['kind'],
      version: Number(m[2]),
      controlUrl: url.href,
    });
  }
  if (services.length === 0)
    throw new DecodeError('upnp/description', 'no WANIPConnection or WANPPPConnection service', 0);
  services.sort((a, b) => rank(a) - rank(b));
  const dev = descendants(root, 'device')[0];
  return { friendlyName: dev ? childText(dev, 'friendlyName') : undefined, services };
}

/** One SOAP argument: name and value, in the order the service's action defines. */
export type SoapArg = readonly [name: string, value: string | number];

/** A SOAP request ready for POST: the body and the SOAPAction header value (with its quotes). */
export interface SoapRequest {
  readonly body: string;
  readonly soapAction: string;
  readonly contentType: string;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Builds a SOAP call. Throws TypeError for an action or argument name that is not a plain XML name. */
export function encodeSoapRequest(serviceType: string, action: string, args: readonly SoapArg[]): SoapRequest {
  if (!NAME.test(action)) throw new TypeError(`"action" must be an XML name, got ${action}`);
  if (/["\r\n]/.test(serviceType)) throw new TypeError('"serviceType" must not contain quotes or line breaks');
  let inner = '';
  for (const [name, value] of args) {
    if (!NAME.test(name)) throw new TypeError(`argument name must be an XML name, got ${name}`);
    inner += `<${name}>${escapeXml(String(value))}</${name}>`;
  }
  const body =
    '<?xml version="1.0"?>\r\n' +
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
    `<s:Body><u:${action} xmlns:u="${escapeXml(serviceType)}">${inner}</u:${action}></s:Body></s:Envelope>\r\n`;
  return { body, soapAction: `"${serviceType}#${action}"`, contentType: 'text/xml; charset="utf-8"' };
}

/** A SOAP answer: output arguments, or the UPnP error. */
export type SoapResult =
  | { readonly ok: true; readonly values: Readonly<Record<string, string>> }
  | {
      readonly ok: false;
      readonly httpStatus: number;
      /** UPnP error code from the fault detail (402, 718, 725, …), if the answer had one. */
      readonly errorCode: number | undefined;
      readonly errorDescription: string | undefined;
    };

/**
 * Reads the answer to `action`. A SOAP fault (any HTTP status) or a non-2xx status without one is `ok: false`;
 * a 2xx answer is `ok: true` with the output arguments (empty when the gateway sent none). Never throws.
 */
export function decodeSoapResponse(httpStatus: number, body: string, action: string): SoapResult {
  const doc = parseXml(body);
  const fault = descendants(doc, 'Fault')[0];
  if (fault) {
    const err = descendants(fault, 'UPnPError')[0] ?? fault;
    const codeText = childText(err, 'errorCode') ?? descendants(err, 'errorCode')[0]?.text.trim();
    const code = codeText !== undefined && /^\d{1,4}$/.test(codeText) ? Number(codeText) : undefined;
    const desc = childText(err, 'errorDescription') ?? childText(fault, 'faultstring');
    return { ok: false, httpStatus, errorCode: code, errorDescription: desc };
  }
  if (httpStatus < 200 || httpStatus > 299)
    return { ok: false, httpStatus, errorCode: undefined, errorDescription: undefined };
  const res = descendants(doc, `${action}Response`)[0];
  const values: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const c of res?.children ?? []) values[c.name] = c.text.trim();
  return { ok: true, values };
}

/** Input arguments of AddPortMapping / AddAnyPortMapping (WANIPConnection:1 §2.4.16, :2 §2.5.16), in order. */
export function addPortMappingArgs(o: {
  externalPort: number;
  internalPort: number;
  internalClient: string;
  leaseS: number;
  description?: string;
}): SoapArg[] {
  return [
    ['NewRemoteHost', ''],
    ['NewExternalPort', o.externalPort],
    ['NewProtocol', 'UDP'],
    ['NewInternalPort', o.internalPort],
    ['NewInternalClient', o.internalClient],
    ['NewEnabled', 1],
    ['NewPortMappingDescription', o.description ?? UPNP.DESCRIPTION],
    ['NewLeaseDuration', o.leaseS],
  ];
}

/** Input arguments of DeletePortMapping (WANIPConnection:1 §2.4.17), in order. */
export function deletePortMappingArgs(externalPort: number): SoapArg[] {
  return [
    ['NewRemoteHost', ''],
    ['NewExternalPort', externalPort],
    ['NewProtocol', 'UDP'],
  ];
}
