/**
 * Types shared by the port-mapper core, its UPnP steps and the driver: the mapping, the actions the core emits,
 * phases, counters and the status snapshot.
 */
import type { AddrPort } from '../internal/addr.js';
import type { PortmapProtocol } from './constants.js';
import type { PortmapError } from './errors.js';
import type { IgdService } from './igd.js';

/** A mapped public endpoint for our UDP port. */
export interface PortMapping {
  readonly protocol: PortmapProtocol;
  /** The gateway's public address and the external port it forwards to our internal port. */
  readonly external: AddrPort;
  readonly internalPort: number;
  /** When the mapping lapses unless renewed (same clock as `now`); renewal starts at half the lifetime. */
  readonly expiresAt: number;
  /** Granted lifetime in seconds (for a permanent UPnP lease: our own renewal horizon, `lifetimeS`). */
  readonly lifetimeS: number;
  /** True when the gateway only granted a permanent UPnP lease (lease 0 after error 402/725). */
  readonly permanent: boolean;
}

/** Why a `mapping` action was emitted. */
export type MappingChangeReason = 'created' | 'changed' | 'public-ip-changed' | 'expired' | 'refused' | 'closed';

/** What the core asks the driver to do. */
export type PortmapAction =
  | { readonly kind: 'send'; readonly socket: 'pmp' | 'ssdp'; readonly to: AddrPort; readonly bytes: Uint8Array }
  | {
      readonly kind: 'http';
      readonly id: number;
      readonly method: 'GET' | 'POST';
      readonly url: string;
      readonly headers: Readonly<Record<string, string>>;
      readonly body: string | undefined;
      readonly timeoutMs: number;
      readonly maxBytes: number;
    }
  | {
      readonly kind: 'mapping';
      readonly mapping: PortMapping | undefined;
      readonly previous: PortMapping | undefined;
      readonly reason: MappingChangeReason;
    }
  | { readonly kind: 'event'; readonly event: string; readonly detail: Readonly<Record<string, unknown>> }
  | { readonly kind: 'closed' };

/** Where the core is. */
export type PortmapPhase = 'idle' | 'probing' | 'mapping' | 'mapped' | 'waiting' | 'closing' | 'closed';

/** Counter names of the core. */
export type PortmapCounter =
  | 'probes'
  | 'pmpResponses'
  | 'pcpResponses'
  | 'ssdpResponses'
  | 'httpResponses'
  | 'droppedMalformed'
  | 'droppedForeign'
  | 'droppedForeignLocation'
  | 'droppedUnexpected'
  | 'droppedStaleHttp'
  | 'retransmits'
  | 'mappingsCreated'
  | 'renewals'
  | 'renewFailures'
  | 'mappingsLost'
  | 'failures'
  | 'epochChecks'
  | 'epochResets'
  | 'leaseZeroRetries'
  | 'conflictRetries'
  | 'released'
  | 'httpErrors'
  | 'soapFaults';

/** Shared with core-upnp.ts: the mapping held, with what renewing and releasing it needs. */
export interface Held extends PortMapping {
  readonly nonce: Uint8Array | undefined;
  readonly service: IgdService | undefined;
}

/** Per-protocol status. */
export interface ServiceStatus {
  /** true: answered; false: answered with a refusal (see `reason`); undefined: not (yet) heard. */
  readonly available: boolean | undefined;
  readonly reason: string | undefined;
  /** Last epoch (seconds) the gateway reported. */
  readonly epoch: number | undefined;
}

/** The core's part of `PortMapper.status()`. */
export interface PortmapCoreStatus {
  readonly phase: PortmapPhase;
  readonly gateway: string;
  readonly localAddress: string;
  readonly internalPort: number;
  readonly protocols: readonly PortmapProtocol[];
  readonly services: {
    readonly pmp: ServiceStatus & { readonly publicIp: string | undefined };
    readonly pcp: ServiceStatus;
    readonly upnp: ServiceStatus & {
      readonly locations: readonly string[];
      readonly service: { type: string; controlUrl: string; friendlyName: string | undefined } | undefined;
    };
  };
  readonly mapping: PortMapping | undefined;
  readonly lastError: PortmapError | undefined;
  readonly nextWakeInMs: number | undefined;
  readonly counters: Record<string, number>;
}

/** What the driver reports for an `http` action. */
export type HttpResult =
  | { readonly ok: true; readonly status: number; readonly body: string }
  | { readonly ok: false; readonly error: string };

/** What the core knows about one protocol at the gateway. */
export interface ServiceState {
  /** true: answered; false: answered with a refusal; undefined: not heard (yet). */
  available: boolean | undefined;
  reason: string | undefined;
  epoch: { readonly epoch: number; readonly at: number } | undefined;
}
