/**
 * IP address + port values and their 18-byte wire form (16-byte IPv6 or v4-mapped IPv6, then a big-endian port),
 * used by disco Pong and CallMeMaybe and by DERP PeerPresent. Addresses are kept as the strings node:dgram uses
 * ("203.0.113.7", "2001:db8::1"); IPv4-mapped IPv6 is always unmapped to plain IPv4.
 */
import { DecodeError } from '../errors.js';

export interface AddrPort {
  readonly ip: string;
  readonly port: number;
}

export const ADDR_PORT_LEN = 16 + 2;

/** "ip:port" with brackets for IPv6, the form used in status output and as map keys. */
export function formatAddrPort(a: AddrPort): string {
  return a.ip.includes(':') ? `[${a.ip}]:${a.port}` : `${a.ip}:${a.port}`;
}

/** Parses "1.2.3.4:5" or "[::1]:5". Throws TypeError when malformed. */
export function parseAddrPort(s: string): AddrPort {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s);
  if (!m) throw new TypeError(`"${s}" is not ip:port`);
  const port = Number(m[2]);
  const ip = m[1]!;
  if (port > 65535 || (parseIPv4(ip) === undefined && parseIPv6(ip) === undefined))
    throw new TypeError(`"${s}" is not ip:port`);
  return { ip: normalizeIp(ip), port };
}

export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255 || (p.length > 1 && p[0] === '0')) return undefined;
    out[i] = n;
  }
  return out;
}

export function parseIPv6(s: string): Uint8Array | undefined {
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  if (s.length === 0 || s.length > 45) return undefined;
  const out = new Uint8Array(16);
  let head = s;
  let tail = '';
  const dbl = s.indexOf('::');
  if (dbl >= 0) {
    if (s.indexOf('::', dbl + 1) >= 0) return undefined;
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const parseGroups = (t: string): number[] | undefined => {
    if (t === '') return [];
    const groups = t.split(':');
    const words: number[] = [];
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i]!;
      if (i === groups.length - 1 && g.includes('.')) {
        const v4 = parseIPv4(g);
        if (!v4) return undefined;
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        words.push(parseInt(g, 16));
      }
    }
    return words;
  };
  const h = parseGroups(head);
  const t = parseGroups(tail);
  if (!h || !t) return undefined;
  if (dbl < 0 ? h.length !== 8 : h.length + t.length > 7) return undefined;
  const words = [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t];
  for (let i = 0; i < 8; i++) {
    out[i * 2] = words[i]! >> 8;
    out[i * 2 + 1] = words[i]! & 0xff;
  }
  return out;
}

/** 16-byte form: IPv6 as is, IPv4 as ::ffff:a.b.c.d. Throws TypeError for a non-IP string. */
export function ipTo16(ip: string): Uint8Array {
  const v4 = parseIPv4(ip);
  if (v4) {
    const out = new Uint8Array(16);
    out[10] = 0xff;
    out[11] = 0xff;
    out.set(v4, 12);
    return out;
  }
  const v6 = parseIPv6(ip);
  if (!v6) throw new TypeError(`"${ip}" is not an IP address`);
  return v6;
}

function isV4Mapped(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/** Formats 16 bytes at `off` as an IP string, unmapping v4-mapped addresses. */
export function ipFrom16(b: Uint8Array, off = 0): string {
  if (isV4Mapped(b, off)) return `${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((b[off + i * 2]! << 8) | b[off + i * 2 + 1]!);
  // RFC 5952: compress the longest run (>= 2) of zero words, first one on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** Canonical string form of an IP (lower-case, compressed IPv6, unmapped IPv4). */
export function normalizeIp(ip: string): string {
  if (parseIPv4(ip)) return ip;
  return ipFrom16(ipTo16(ip));
}

export function isIPv6(ip: string): boolean {
  return ip.includes(':');
}

/** Writes the 18-byte form at `off`; returns the offset after it. */
export function encodeAddrPortInto(a: AddrPort, out: Uint8Array, off: number): number {
  out.set(ipTo16(a.ip), off);
  out[off + 16] = (a.port >>> 8) & 0xff;
  out[off + 17] = a.port & 0xff;
  return off + ADDR_PORT_LEN;
}

/** Reads the 18-byte form at `off`. Throws DecodeError when fewer than 18 bytes remain. */
export function decodeAddrPort(b: Uint8Array, off: number, where = 'addr'): AddrPort {
  if (b.length - off < ADDR_PORT_LEN) throw new DecodeError(where, `need ${ADDR_PORT_LEN} bytes`, off);
  return { ip: ipFrom16(b, off), port: (b[off + 16]! << 8) | b[off + 17]! };
}

/** Address classes used by path scoring (tailscale-protocols §3.4) and candidate filtering. */
export function ipClass(ip: string): {
  v6: boolean;
  loopback: boolean;
  linkLocal: boolean;
  private: boolean;
  unspecified: boolean;
} {
  const v4 = parseIPv4(ip);
  if (v4) {
    const [a, b] = [v4[0]!, v4[1]!];
    return {
      v6: false,
      loopback: a === 127,
      linkLocal: a === 169 && b === 254,
      private: a === 10 || (a === 172 && b >= 16 && b < 32) || (a === 192 && b === 168),
      unspecified: v4.every((x) => x === 0),
    };
  }
  const v6 = ipTo16(ip);
  const loopback = v6.slice(0, 15).every((x) => x === 0) && v6[15] === 1;
  return {
    v6: true,
    loopback,
    linkLocal: v6[0] === 0xfe && (v6[1]! & 0xc0) === 0x80,
    private: (v6[0]! & 0xfe) === 0xfc,
    unspecified: v6.every((x) => x === 0),
  };
}

export function addrEqual(a: AddrPort, b: AddrPort): boolean {
  return a.port === b.port && a.ip === b.ip;
}
