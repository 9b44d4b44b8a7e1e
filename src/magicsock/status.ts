/** The shape of MagicSocket.status(): the "why am I relayed" answer, per peer. */
import type { NotDirectReason } from './endpoint.js';
import type { PathInfo, PeerState } from './peer-state.js';

export interface PeerStatus {
  readonly publicKey: string;
  readonly discoKey: string | undefined;
  readonly path: PathInfo;
  readonly trusted: boolean;
  /** Why the peer is not on a trusted direct path, or undefined when it is. */
  readonly notDirectReason: NotDirectReason | undefined;
  readonly derpRegion: number | undefined;
  readonly candidates: ReadonlyArray<{
    addr: string;
    sources: string[];
    latencyMs: number | undefined;
    lastPongMsAgo: number | undefined;
    lastPingMsAgo: number | undefined;
  }>;
  readonly tx: { packets: number; bytes: number };
  readonly rx: { packets: number; bytes: number };
  readonly pendingDatagrams: number;
}

export interface SocketStatus {
  readonly publicKey: string;
  readonly discoKey: string;
  readonly localAddresses: string[];
  readonly endpoints: ReadonlyArray<{ addr: string; type: string }>;
  readonly udpWorks: boolean | undefined;
  readonly mappingVariesByDestIP: boolean | undefined;
  readonly relay: unknown;
  /** The router port mapping (NAT-PMP/PCP/UPnP): phase, protocol and external endpoint, or undefined when off. */
  readonly portMapping: { phase: string; protocol?: string; external?: string; reason?: string } | undefined;
  readonly peers: PeerStatus[];
  readonly counters: Record<string, number>;
}

const SOURCE_NAMES: Array<[number, string]> = [
  [1, 'hint'],
  [2, 'call-me-maybe'],
  [4, 'ping-source'],
];

export function peerStatus(p: PeerState, now: number): PeerStatus {
  const ago = (t: number) => (Number.isFinite(t) ? Math.round(now - t) : undefined);
  return {
    publicKey: p.key.toString(),
    discoKey: p.discoKey?.toString(),
    path: p.path,
    trusted: p.core.trustedBest(now) !== undefined,
    notDirectReason: p.core.notDirectReason(now),
    derpRegion: p.derpRegion ?? p.lastHeardRegion,
    candidates: [...p.core.candidates.values()].map((c) => ({
      addr: c.key,
      sources: SOURCE_NAMES.filter(([bit]) => c.sources & bit).map(([, n]) => n),
      latencyMs: c.latencyMs,
      lastPongMsAgo: ago(c.lastPong),
      lastPingMsAgo: ago(c.lastPing),
    })),
    tx: { packets: p.txPackets, bytes: p.txBytes },
    rx: { packets: p.rxPackets, bytes: p.rxBytes },
    pendingDatagrams: p.pending.length,
  };
}
