/**
 * How to reach a DERP node over TCP/TLS: the TLS options its map entry implies (server name, InsecureForTests,
 * `CertName` pinning) and the IP-literal override of DNS (tailscale-protocols.md §2.1, §2.7).
 *
 * - TLS server name: `CertName` when set (and not a hash pin), else `HostName` (omitted for IP literals, which
 *   TLS SNI does not allow).
 * - `InsecureForTests` over https: certificate verification off.
 * - `CertName: "sha256-raw:<hex>"`: chain verification off, and the leaf certificate's SHA-256 must equal the hex
 *   (self-signed derper certificates); check it with `checkPinnedCert` once the TLS handshake is done. The DERP
 *   connection (DerpConn) does not expose its TLS socket yet, so region clients keep chain verification on for
 *   pinned nodes (fail closed); netcheck's HTTPS latency check verifies the pin.
 */
import type { ConnectionOptions, PeerCertificate, TLSSocket } from 'node:tls';
import { parseIPv4, parseIPv6 } from '../internal/addr.js';
import type { DerpNode } from './derp-map.js';

const SHA256_RAW = 'sha256-raw:';

/** The pinned leaf-certificate SHA-256 (lower-case hex) of a node, if its CertName pins one. */
export function pinnedCertHash(node: DerpNode): string | undefined {
  const c = node.certName;
  if (c === undefined || !c.startsWith(SHA256_RAW)) return undefined;
  return c.slice(SHA256_RAW.length).toLowerCase();
}

function isIpLiteral(s: string): boolean {
  return parseIPv4(s) !== undefined || parseIPv6(s) !== undefined;
}

/**
 * node:tls options for an https node (servername, verification). Empty for http nodes.
 *
 * @param verifiesPin the caller checks a `sha256-raw:` pin itself with `checkPinnedCert` once TLS is up; only then
 *   is chain verification turned off for a pinned node. Callers that cannot see the TLS socket leave it false and
 *   keep normal verification, so a pinned self-signed node fails closed instead of being trusted unchecked.
 */
export function nodeTlsOptions(node: DerpNode, verifiesPin = false): ConnectionOptions {
  if (node.scheme !== 'https') return {};
  const pin = pinnedCertHash(node);
  const name = node.certName !== undefined && pin === undefined ? node.certName : node.hostName;
  const opts: ConnectionOptions = {};
  if (!isIpLiteral(name)) opts.servername = name;
  if (node.insecureForTests || (pin !== undefined && verifiesPin)) opts.rejectUnauthorized = false;
  return opts;
}

/**
 * For a node with a `sha256-raw:` CertName: an Error when the connected socket's leaf certificate does not hash to
 * the pin, undefined when it matches or the node pins nothing.
 */
export function checkPinnedCert(node: DerpNode, socket: Pick<TLSSocket, 'getPeerCertificate'>): Error | undefined {
  const pin = pinnedCertHash(node);
  if (pin === undefined) return undefined;
  const cert: PeerCertificate | undefined = socket.getPeerCertificate();
  const got = cert?.fingerprint256?.replace(/:/g, '').toLowerCase();
  if (got === pin) return undefined;
  return new Error(`DERP node "${node.name}": certificate SHA-256 ${got ?? '(none)'} does not match pinned ${pin}`);
}
