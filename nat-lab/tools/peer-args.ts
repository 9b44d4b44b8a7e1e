/**
 * The command line of the peer program contract (nat-lab/README.md, "Peer program contract"), parsed in one place
 * for every peer program: the meshsock peer (nat-lab/peer.ts) and the stand-in peer. Plain Node, no project
 * imports, so the stand-in tools can be transpiled on their own.
 */
import { parseArgs } from 'node:util';

type OptionSpec = { type: 'string' | 'boolean'; multiple?: boolean };

/** The arguments the harness passes to every peer program. */
const CONTRACT_OPTIONS: Record<string, OptionSpec> = {
  key: { type: 'string' },
  peer: { type: 'string' },
  stun: { type: 'string', multiple: true },
  derp: { type: 'string' },
  'duration-ms': { type: 'string' },
  'interval-ms': { type: 'string' },
  port: { type: 'string' },
  name: { type: 'string' },
};

export interface PeerArgs {
  readonly values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  /** --key: our private key, 64 hex digits. */
  readonly keyHex: string;
  /** --peer: the other peer's public key, 64 hex digits. */
  readonly peerHex: string;
}

/** Parses the contract's arguments plus `extra` ones; a missing or malformed key goes to `fail`. */
export function parsePeerArgs(extra: Record<string, OptionSpec>, fail: (message: string) => never): PeerArgs {
  const { values } = parseArgs({ options: { ...CONTRACT_OPTIONS, ...extra }, strict: false });
  const hex64 = (v: unknown, name: string): string =>
    typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? v : fail(`--${name}: 64 hex digits required`);
  return { values, keyHex: hex64(values.key, 'key'), peerHex: hex64(values.peer, 'peer') };
}
