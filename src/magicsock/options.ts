/** MagicSocket's options and the argument parsing shared by its public methods. */
import { ErrorCode, MeshsockError } from '../errors.js';
import { formatAddrPort, parseAddrPort, type AddrPort } from '../internal/addr.js';
import type { Clock, RandomSource } from '../internal/clock.js';
import { PublicKey, type PrivateKey } from '../key/keys.js';
import type { Signaller } from '../signal/signaller.js';
import type { DerpMapOption } from './derp-transport.js';
import type { RelayTransport } from './relay.js';

/** Largest datagram the socket accepts (the IPv4 UDP limit; DERP carries up to 64 KiB). */
export const MAX_DATAGRAM = 65_507;

export interface MagicSocketOptions {
  /** Our node key (identity). A PrivateKey or its `privkey:` text. */
  privateKey: PrivateKey | string;
  /** UDP port for both families; 0 (default) picks one. */
  port?: number;
  /** Addresses to bind. A string binds IPv4 (or IPv6) only there; default all interfaces, both families. */
  bindAddress?: string | { v4?: string | false; v6?: string | false };
  /** STUN servers ("ip:port"), queried from our own sockets. No default: meshsock never contacts public hosts. */
  stunServers?: ReadonlyArray<string | AddrPort>;
  /** How CallMeMaybe messages reach peers when DERP is not used (or in addition to it). */
  signaller?: Signaller;
  /**
   * Your DERP map (Tailscale's DERPMap JSON or the camelCase form; see README). With it, every peer is reachable
   * through DERP from its first datagram, CallMeMaybe travels over DERP, and netcheck picks the home region. No
   * default: meshsock never contacts public servers.
   */
  derpMap?: DerpMapOption;
  /** A custom relay transport instead of DERP (tests, or your own relay). Exclusive with `derpMap`. */
  relay?: RelayTransport;
  /**
   * Ask the home router for a public UDP port (NAT-PMP, PCP, UPnP-IGD), so peers behind hard NATs reach us directly.
   * Default: on when IPv4 is bound to all interfaces, off for a specific bind address. Only the default gateway is
   * ever asked, and only when it is a private (RFC 1918) address; pass `{ gateway }` to name it.
   */
  portMapping?: boolean | { gateway?: string; protocols?: ReadonlyArray<'pmp' | 'pcp' | 'upnp'> };
  /** How often to look for interface/address changes, ms; 0 disables. Default 1000 (MAGICSOCK.INTERFACE_POLL_MS) for wildcard binds. */
  interfacePollMs?: number;
  /** Socket send/receive buffer size in bytes. Default 7 MiB (capped by the kernel's rmem_max/wmem_max). */
  socketBufferBytes?: number;
  clock?: Clock;
  rng?: RandomSource;
}

export function normalizeBind(b: MagicSocketOptions['bindAddress']): { v4: string | false; v6: string | false } {
  if (b === undefined) return { v4: '0.0.0.0', v6: '::' };
  if (typeof b === 'string') {
    const ap = b.includes(':') ? { v4: false as const, v6: b } : { v4: b, v6: false as const };
    return ap;
  }
  return { v4: b.v4 ?? '0.0.0.0', v6: b.v6 ?? '::' };
}

export function toAddrPort(v: string | AddrPort, name: string): AddrPort {
  try {
    if (typeof v === 'string') return parseAddrPort(v);
    if (v && typeof v.ip === 'string' && Number.isInteger(v.port)) return parseAddrPort(formatAddrPort(v));
  } catch {
    // fall through to the typed error
  }
  throw new MeshsockError(ErrorCode.BAD_CONFIG, `${name}: ${JSON.stringify(v)} is not "ip:port"`);
}

export function toPublicKey(v: PublicKey | string, name: string, kind: 'node' | 'disco' = 'node'): PublicKey {
  if (v instanceof PublicKey) return v;
  if (typeof v === 'string') return PublicKey.parse(v, kind);
  throw new TypeError(`"${name}" must be a PublicKey or its text form`);
}
