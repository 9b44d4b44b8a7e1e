/**
 * SSDP (UPnP Device Architecture 1.1 §1.3) codec: the M-SEARCH request we send and the unicast HTTP-over-UDP
 * answers a gateway sends back. Pure functions over Uint8Array (ASCII), no Node imports.
 *
 * M-SEARCH (to 239.255.255.250:1900, or unicast to the gateway's port 1900 first to open host firewalls):
 *
 *   M-SEARCH * HTTP/1.1\r\n
 *   HOST: 239.255.255.250:1900\r\n          always the group address, as most gateways expect even for unicast
 *   ST: <search target>\r\n                 ssdp:all, or urn:schemas-upnp-org:device:InternetGatewayDevice:1
 *   MAN: "ssdp:discover"\r\n                quoted, as UDA requires
 *   MX: 1\r\n                               seconds the device may wait before answering (constants.ts)
 *   \r\n
 *
 * Answer (one per matching device or service; header names are case-insensitive, order is free):
 *
 *   HTTP/1.1 200 OK\r\n
 *   CACHE-CONTROL: max-age=120\r\n
 *   ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n
 *   USN: uuid:…::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n
 *   LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n     the device description we fetch next
 *   SERVER: OS/version UPnP/1.1 product/version\r\n
 *   \r\n
 *
 * The decoder is lenient about line endings (bare \n too) and unknown headers, strict about the status line.
 */
import { DecodeError } from '../errors.js';
import { UPNP } from './constants.js';

/** A decoded SSDP search answer. */
export interface SsdpResponse {
  /** The description URL, if the answer has one (an answer without it is useless to us). */
  readonly location: string | undefined;
  readonly st: string | undefined;
  readonly usn: string | undefined;
  readonly server: string | undefined;
  /** Every header, names lower-cased; the last one wins for a repeated name. */
  readonly headers: Readonly<Record<string, string>>;
}

const CRLF = '\r\n';

function ascii(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

/**
 * An M-SEARCH request. `st` is the search target; `host` the HOST header (default the multicast group, which
 * gateways expect even in a unicast search). Throws TypeError for a value containing a line break.
 */
export function encodeMSearch(opts: { st: string; mx?: number; host?: string }): Uint8Array {
  const host = opts.host ?? `${UPNP.SSDP_MULTICAST_IP}:${UPNP.SSDP_PORT}`;
  const mx = opts.mx ?? UPNP.MX_SECONDS;
  for (const [k, v] of [
    ['st', opts.st],
    ['host', host],
  ] as const) {
    if (typeof v !== 'string' || v.length === 0 || /[\r\n]/.test(v))
      throw new TypeError(`"${k}" must be a non-empty single-line string`);
  }
  if (!Number.isInteger(mx) || mx < 1 || mx > 120) throw new RangeError(`"mx" must be an integer 1..120, got ${mx}`);
  return ascii(
    `M-SEARCH * HTTP/1.1${CRLF}HOST: ${host}${CRLF}ST: ${opts.st}${CRLF}MAN: "ssdp:discover"${CRLF}MX: ${mx}${CRLF}${CRLF}`,
  );
}

/** `HTTP/1.0 200` or `HTTP/1.1 200`, then a space, a line break or the end. */
const STATUS_LINE = /^HTTP\/1\.[01] 200(?:[ \r\n]|$)/;

/** Decodes a search answer. Throws DecodeError when it is not an `HTTP/1.x 200` answer or is oversized. */
export function decodeSsdpResponse(b: Uint8Array): SsdpResponse {
  if (b.length > UPNP.MAX_SSDP_BYTES)
    throw new DecodeError('ssdp/response', `longer than ${UPNP.MAX_SSDP_BYTES} bytes`, 0);
  const text = latin1(b);
  const lines = text.split(/\r?\n/);
  if (!STATUS_LINE.test(text)) throw new DecodeError('ssdp/response', 'not an HTTP/1.x 200 answer', 0);
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const get = (k: string): string | undefined => (Object.hasOwn(headers, k) ? headers[k] : undefined);
  return { location: get('location'), st: get('st'), usn: get('usn'), server: get('server'), headers };
}

/** True when `b` starts like an SSDP search answer (`HTTP/1.x 200`). Never throws, for any input. */
export function isSsdpResponse(b: unknown): boolean {
  if (!(b instanceof Uint8Array) || b.length < 12 || b.length > UPNP.MAX_SSDP_BYTES) return false;
  let head = '';
  for (let i = 0; i < Math.min(b.length, 16); i++) head += String.fromCharCode(b[i]!);
  return STATUS_LINE.test(head);
}

const IGD_HINT = /InternetGatewayDevice|WANIPConnection|WANPPPConnection|WANConnectionDevice|WANDevice/i;

/** True when the answer's ST or USN names an internet gateway (or one of its WAN parts). Never throws. */
export function isIgdAnswer(r: SsdpResponse): boolean {
  return IGD_HINT.test(r.st ?? '') || IGD_HINT.test(r.usn ?? '');
}
