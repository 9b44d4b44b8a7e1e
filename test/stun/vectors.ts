/** Loads test/vectors/stun/*.json (sources in test/vectors/stun/README.md). */
import { readFileSync } from 'node:fs';
import { fromHex } from '../../src/internal/bytes.js';

const dir = new URL('../vectors/stun/', import.meta.url);
const load = (name: string): unknown => JSON.parse(readFileSync(new URL(name, dir), 'utf8'));

interface Mapped {
  ip: string;
  port: number;
}

export const rfc5769 = load('rfc5769.json') as {
  password: string;
  txId: string;
  request: { hex: string; software: string; username: string };
  ipv4Response: { hex: string; software: string; mapped: Mapped };
  ipv6Response: { hex: string; software: string; mapped: Mapped };
};

export const tailscale = load('tailscale.json') as {
  requests: { cases: { name: string; txId: string; hex: string }[] };
  responses: { cases: { name: string; hex: string; txId: string; mapped: Mapped; mappedAttr?: number }[] };
};

export const bytes = (hex: string): Uint8Array => fromHex(hex);
