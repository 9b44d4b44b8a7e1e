/**
 * Sans-IO core of the port mapper: probe the gateway, pick a protocol, create a UDP mapping for our port, renew
 * it, notice a gateway reboot, release it on close. No sockets, no timers, no HTTP: `now` (monotonic ms) and
 * inputs go in, actions come out; the driver (port-mapper.ts) owns the sockets, the HTTP requests and one timer.
 * Protocol steps live in core-pmp-pcp.ts (NAT-PMP, PCP) and core-upnp.ts (SSDP, description, SOAP).
 *
 *            start                  best protocol answered (or 250 ms)
 *   idle ───────────▶ probing ─────────────────────────────────────▶ mapping ──ok──▶ mapped ◀─┐
 *                       ▲  ▲                                          │   │ failed:           │ renew at ½ lifetime
 *                       │  └──── retry (30 s doubling to 10 min) ◀────┘   └ next protocol     │ epoch reset → remap
 *                       │           waiting ◀── nothing answered / all refused                │ public IP change
 *                       └──────────────── lost (expired, refused on renewal) ◀────────────────┘
 *   close: mapped (or a request in flight) ──▶ closing (lifetime 0 / DeletePortMapping, ≤ 1 s) ──▶ closed
 *
 * Probe (tailscale-protocols.md §5): one NAT-PMP public-address request and one PCP ANNOUNCE to gateway:5351, an
 * SSDP M-SEARCH unicast to gateway:1900 and, when the gateway is on a private LAN, multicast to
 * 239.255.255.250:1900 (ssdp:all, then InternetGatewayDevice:1). The probe ends at 250 ms, or as soon as the most
 * preferred enabled protocol answered (UPnP: 50 ms after its first answer, to collect the others).
 * Preference: NAT-PMP > PCP > UPnP among those that answered (restricted and ordered by `protocols`).
 * Each mapping asks for lifetime 7200 s and for the external port it had last time, renews at half the granted
 * lifetime, and is released on close. While mapped with NAT-PMP/PCP, the epoch is checked every 60 s.
 *
 * Only the gateway is ever contacted: datagrams from anyone else are dropped and counted, and UPnP description
 * and control URLs must point at the gateway's address. Bad replies never throw: they are dropped and counted.
 */
import { type AddrPort, addrEqual, formatAddrPort, parseIPv4 } from '../internal/addr.js';
import { type RandomSource, systemRandom } from '../internal/clock.js';
import { Counters } from '../internal/diagnostics.js';
import { NAT_PMP, PORTMAP, PORTMAP_PROTOCOLS, type PortmapProtocol, UPNP } from './constants.js';
import {
  onPcpAnswer,
  onPmpAnswer,
  type UdpOp,
  udpEpochCheck,
  udpStartOp,
  udpStartRelease,
  udpTimeout,
} from './core-pmp-pcp.js';
import { onSsdpAnswer, type UpnpOp, upnpHttpResult, upnpStartRelease, upnpStartStep } from './core-upnp.js';
import { epochReset } from './epoch.js';
import { PortmapError, PortmapFailure } from './errors.js';
import { isRfc1918, isSharedAddressSpace } from './gateway.js';
import type { IgdService } from './igd.js';
import { decodeNatPmpResponse, encodeNatPmpPublicAddressRequest, isNatPmpResponse } from './nat-pmp.js';
import { decodePcpResponse, encodePcpAnnounceRequest, isPcpResponse } from './pcp.js';
import { encodeMSearch } from './ssdp.js';
import type {
  Held,
  HttpResult,
  PortMapping,
  PortmapAction,
  PortmapCoreStatus,
  PortmapCounter,
  PortmapPhase,
  ServiceState,
  ServiceStatus,
} from './types.js';

export interface PortmapCoreOptions {
  /** Our UDP port to map. */
  internalPort: number;
  /** The gateway's IPv4 address (validated by the caller: private, shared or loopback). */
  gateway: string;
  /** Our IPv4 address on the gateway's LAN (PCP client IP, UPnP internal client). */
  localAddress: string;
  /** Protocols allowed, in order of preference. Default: pmp, pcp, upnp. */
  protocols?: readonly PortmapProtocol[];
  /** Send SSDP M-SEARCH to the multicast group too. Default: when the gateway is RFC 1918 or RFC 6598. */
  multicast?: boolean;
  /** Requested lifetime in seconds. Default 7200. */
  lifetimeS?: number;
  /** Nonces and random UPnP ports. */
  rng?: RandomSource;
}

type Op = { readonly type: 'probe'; readonly deadline: number } | UdpOp | UpnpOp;

/** The port mapper's state machine. One per internal port and gateway. */
export class PortmapCore {
  readonly counters = new Counters<PortmapCounter>();
  readonly internalPort: number;
  readonly gateway: string;
  readonly localAddress: string;
  readonly protocols: readonly PortmapProtocol[];
  readonly multicast: boolean;
  readonly lifetimeS: number;
  /** @internal Nonces and random ports (core-pmp-pcp.ts, core-upnp.ts). */
  readonly rng: RandomSource;
  /** @internal What NAT-PMP said, and the public address it reported. */
  readonly pmp: ServiceState & { publicIp: string | undefined } = {
    available: undefined,
    reason: undefined,
    epoch: undefined,
    publicIp: undefined,
  };
  /** @internal What PCP said. */
  readonly pcp: ServiceState = { available: undefined, reason: undefined, epoch: undefined };
  /** @internal What SSDP found, and the description last read. */
  readonly upnp = {
    available: undefined as boolean | undefined,
    reason: undefined as string | undefined,
    locations: [] as Array<{ url: string; igd: boolean }>,
    firstAt: undefined as number | undefined,
    described: undefined as { location: string; service: IgdService; friendlyName: string | undefined } | undefined,
  };
  /** @internal The request in flight. */
  op: Op | undefined;
  /** @internal The mapping held. */
  current: Held | undefined;
  /** @internal The external port of the last mapping, asked for again. */
  prevPort: number | undefined;
  private phase: PortmapPhase = 'idle';
  private renewAt = Infinity;
  private epochCheckAt = Infinity;
  private retryAt = Infinity;
  private retryDelay: number = PORTMAP.RETRY_MIN_MS;
  private readonly tried = new Set<PortmapProtocol>();
  private lastError: PortmapError | undefined;
  private nextHttpId = 1;
  private out: PortmapAction[] = [];

  constructor(opts: PortmapCoreOptions) {
    if (!Number.isInteger(opts.internalPort) || opts.internalPort < 1 || opts.internalPort > 65535)
      throw new RangeError(`"internalPort" must be an integer 1..65535, got ${opts.internalPort}`);
    for (const k of ['gateway', 'localAddress'] as const)
      if (parseIPv4(String(opts[k])) === undefined) throw new TypeError(`"${k}" must be an IPv4 address`);
    const protocols = opts.protocols ?? PORTMAP_PROTOCOLS;
    if (!Array.isArray(protocols) || protocols.length === 0 || protocols.some((p) => !PORTMAP_PROTOCOLS.includes(p)))
      throw new TypeError(`"protocols" must be a non-empty list of ${PORTMAP_PROTOCOLS.join(', ')}`);
    const lifetimeS = opts.lifetimeS ?? PORTMAP.LIFETIME_S;
    if (!Number.isInteger(lifetimeS) || lifetimeS < 1 || lifetimeS > 0x7fffffff)
      throw new RangeError(`"lifetimeS" must be a positive integer, got ${lifetimeS}`);
    this.internalPort = opts.internalPort;
    this.gateway = opts.gateway;
    this.localAddress = opts.localAddress;
    this.protocols = [...new Set(protocols)];
    this.multicast = opts.multicast ?? (isRfc1918(opts.gateway) || isSharedAddressSpace(opts.gateway));
    this.lifetimeS = lifetimeS;
    this.rng = opts.rng ?? systemRandom;
  }

  // ---- inputs -------------------------------------------------------------------------------------------------

  /** Starts probing. Only the first call does anything. */
  start(now: number): PortmapAction[] {
    if (this.phase === 'idle') this.beginProbe(now);
    return this.flush();
  }

  /** A datagram on the 5351 socket (`pmp`: NAT-PMP and PCP) or the SSDP socket. Never throws. */
  handleDatagram(socket: 'pmp' | 'ssdp', bytes: Uint8Array, from: AddrPort, now: number): PortmapAction[] {
    if (this.phase === 'idle' || this.phase === 'closed') return [];
    if (from.ip !== this.gateway || (socket === 'pmp' && from.port !== NAT_PMP.SERVER_PORT)) {
      this.counters.inc('droppedForeign');
      return [];
    }
    try {
      if (socket === 'ssdp') onSsdpAnswer(this, bytes, now);
      else if (isNatPmpResponse(bytes)) onPmpAnswer(this, decodeNatPmpResponse(bytes), now);
      else if (isPcpResponse(bytes)) onPcpAnswer(this, decodePcpResponse(bytes), now);
      else this.counters.inc('droppedMalformed');
    } catch {
      this.counters.inc('droppedMalformed');
    }
    return this.flush();
  }

  /** The result of an `http` action. Unknown or stale ids are dropped. Never throws. */
  handleHttp(id: number, res: HttpResult, now: number): PortmapAction[] {
    const op = this.op;
    if (op?.type !== 'upnp' || op.httpId !== id) {
      this.counters.inc('droppedStaleHttp');
      return [];
    }
    this.counters.inc('httpResponses');
    upnpHttpResult(this, op, res, now);
    return this.flush();
  }

  /** Timers: retransmissions, probe end, renewals, epoch checks, expiry, retry. */
  handleTimeout(now: number): PortmapAction[] {
    const op = this.op;
    if (op?.type === 'probe') this.maybeEndProbe(now);
    else if (op?.type === 'pmp' || op?.type === 'pcp') udpTimeout(this, op, now);
    else if (op?.type === 'upnp') {
      if (now >= op.stepDeadline) upnpHttpResult(this, op, { ok: false, error: 'no HTTP result in time' }, now);
    } else if (this.phase === 'mapped' && this.current) {
      const cur = this.current;
      if (now >= cur.expiresAt) this.lose('expired', now);
      else if (now >= this.renewAt) this.startOp(cur.protocol, 'renew', now);
      else if (now >= this.epochCheckAt && cur.protocol !== 'upnp') {
        this.epochCheckAt = now + PORTMAP.EPOCH_CHECK_INTERVAL_MS;
        udpEpochCheck(this, cur.protocol);
      }
    } else if (this.phase === 'waiting' && now >= this.retryAt) {
      this.retryAt = Infinity;
      this.beginProbe(now);
    }
    return this.flush();
  }

  /**
   * Releases the mapping (or one that may have been created by a request in flight) and ends. The last action
   * is `closed`, at once or when the gateway answered the release (at most `RELEASE_TIMEOUT_MS`). Idempotent.
   */
  close(now: number): PortmapAction[] {
    if (this.phase === 'closing' || this.phase === 'closed') return [];
    const op = this.op;
    const cur = this.current;
    this.renewAt = this.epochCheckAt = this.retryAt = Infinity;
    this.current = undefined;
    this.op = undefined;
    this.phase = 'closing';
    if (cur) this.out.push({ kind: 'mapping', mapping: undefined, previous: publicView(cur), reason: 'closed' });
    let release: { p: PortmapProtocol; nonce?: Uint8Array; service?: IgdService; ext?: AddrPort } | undefined;
    if (cur) release = { p: cur.protocol, nonce: cur.nonce, service: cur.service, ext: cur.external };
    else if ((op?.type === 'pmp' || op?.type === 'pcp') && op.purpose !== 'release')
      release = { p: op.type, nonce: op.nonce };
    else if (op?.type === 'upnp' && op.service && (op.step === 'add' || op.step === 'external-ip'))
      release = { p: 'upnp', service: op.service, ext: { ip: '0.0.0.0', port: op.externalPort } };
    if (!release) {
      this.finishClose();
      return this.flush();
    }
    this.event('release', { protocol: release.p, external: release.ext && formatAddrPort(release.ext) });
    if (release.p !== 'upnp') udpStartRelease(this, release.p, release.nonce, release.ext, now);
    else if (release.service && release.ext) upnpStartRelease(this, release.service, release.ext.port, now);
    else this.finishClose();
    return this.flush();
  }

  /** When `handleTimeout` wants to run next, or undefined. */
  pollTimeout(): number | undefined {
    const op = this.op;
    let t = Infinity;
    if (op?.type === 'probe') t = Math.min(op.deadline, this.probeReadyAt());
    else if (op?.type === 'pmp' || op?.type === 'pcp') t = Math.min(op.nextSendAt, op.deadline);
    else if (op?.type === 'upnp') t = op.stepDeadline;
    else if (this.phase === 'mapped' && this.current)
      t = Math.min(this.current.expiresAt, this.renewAt, this.epochCheckAt);
    else if (this.phase === 'waiting') t = this.retryAt;
    return Number.isFinite(t) ? t : undefined;
  }

  // ---- queries ------------------------------------------------------------------------------------------------

  /** The current mapping, or undefined. */
  mapping(): PortMapping | undefined {
    return this.current && publicView(this.current);
  }

  /** Where the state machine is. */
  get state(): PortmapPhase {
    return this.phase;
  }

  /** @internal True once close() was called. */
  get closing(): boolean {
    return this.phase === 'closing' || this.phase === 'closed';
  }

  /** A snapshot for `status()`. */
  status(now: number): PortmapCoreStatus {
    const svc = (s: ServiceState): ServiceStatus => ({
      available: s.available,
      reason: s.reason,
      epoch: s.epoch?.epoch,
    });
    const next = this.pollTimeout();
    const d = this.upnp.described;
    return {
      phase: this.phase,
      gateway: this.gateway,
      localAddress: this.localAddress,
      internalPort: this.internalPort,
      protocols: this.protocols,
      services: {
        pmp: { ...svc(this.pmp), publicIp: this.pmp.publicIp },
        pcp: svc(this.pcp),
        upnp: {
          available: this.upnp.available,
          reason: this.upnp.reason,
          epoch: undefined,
          locations: this.upnp.locations.map((l) => l.url),
          service: d && { type: d.service.serviceType, controlUrl: d.service.controlUrl, friendlyName: d.friendlyName },
        },
      },
      mapping: this.mapping(),
      lastError: this.lastError,
      nextWakeInMs: next === undefined ? undefined : Math.max(0, Math.round(next - now)),
      counters: this.counters.snapshot(),
    };
  }

  // ---- shared with core-pmp-pcp.ts and core-upnp.ts ----------------------------------------------------------

  /** @internal */
  emit(a: PortmapAction): void {
    this.out.push(a);
  }

  /** @internal A datagram to gateway:5351. */
  sendGateway(bytes: Uint8Array): void {
    this.out.push({ kind: 'send', socket: 'pmp', to: { ip: this.gateway, port: NAT_PMP.SERVER_PORT }, bytes });
  }

  /** @internal */
  httpId(): number {
    return this.nextHttpId++;
  }

  /** @internal A diagnostics event. */
  event(event: string, detail: Record<string, unknown> = {}): void {
    this.out.push({ kind: 'event', event, detail });
  }

  /** @internal A mapping attempt (or renewal, or release) failed. */
  fail(err: PortmapError, now: number): void {
    const op = this.op;
    this.op = undefined;
    this.counters.inc('failures');
    this.event('failed', {
      protocol: err.protocol,
      reason: err.reason,
      resultCode: err.resultCode,
      message: err.message,
    });
    if (op && op.type !== 'probe' && op.purpose === 'release') return this.finishClose();
    this.lastError = err;
    if (op && op.type !== 'probe' && op.purpose === 'renew' && this.current) {
      this.counters.inc('renewFailures');
      const transient = err.reason === PortmapFailure.NO_ANSWER || err.reason === PortmapFailure.HTTP;
      if (!transient || now >= this.current.expiresAt) return this.lose('refused', now);
      this.phase = 'mapped';
      this.renewAt = now + PORTMAP.RENEW_RETRY_MS;
      return;
    }
    this.tryNext(now);
  }

  /** @internal A mapping was granted (created, renewed or re-created). */
  install(
    now: number,
    protocol: PortmapProtocol,
    external: AddrPort,
    lifetimeS: number,
    permanent: boolean,
    extra: { nonce?: Uint8Array; service?: IgdService },
  ): void {
    const renewal = this.op !== undefined && this.op.type !== 'probe' && this.op.purpose === 'renew';
    const prev = this.current;
    const lifetimeMs = lifetimeS * 1000;
    const held: Held = {
      protocol,
      external,
      internalPort: this.internalPort,
      expiresAt: now + lifetimeMs,
      lifetimeS,
      permanent,
      nonce: extra.nonce,
      service: extra.service,
    };
    this.current = held;
    this.op = undefined;
    this.phase = 'mapped';
    this.tried.clear();
    this.lastError = undefined;
    this.retryDelay = PORTMAP.RETRY_MIN_MS;
    this.prevPort = external.port;
    this.renewAt = now + Math.max(PORTMAP.MIN_RENEW_MS, lifetimeMs * PORTMAP.RENEW_FRACTION);
    this.epochCheckAt = protocol === 'upnp' ? Infinity : now + PORTMAP.EPOCH_CHECK_INTERVAL_MS;
    this.counters.inc(renewal ? 'renewals' : 'mappingsCreated');
    this.event('mapped', { protocol, external: formatAddrPort(external), lifetimeS, permanent, renewal });
    if (!prev || prev.protocol !== protocol || !addrEqual(prev.external, external))
      this.out.push({
        kind: 'mapping',
        mapping: publicView(held),
        previous: prev && publicView(prev),
        reason: prev ? 'changed' : 'created',
      });
  }

  /** @internal The release is done (answered, failed or timed out). */
  finishClose(): void {
    this.op = undefined;
    this.phase = 'closed';
    this.renewAt = this.epochCheckAt = this.retryAt = Infinity;
    this.out.push({ kind: 'closed' });
  }

  /** @internal Ends the probe once the best enabled protocol answered, every one said no, or time is up. */
  maybeEndProbe(now: number): void {
    const op = this.op;
    if (op?.type !== 'probe' || now < Math.min(op.deadline, this.probeReadyAt())) return;
    this.op = undefined;
    this.event('probed', { pmp: this.pmp.available, pcp: this.pcp.available, upnp: this.upnp.available });
    this.tried.clear();
    this.tryNext(now);
  }

  /**
   * When the probe may end on what it knows: at once when the most preferred protocol that did not say no has
   * answered (UPnP: 50 ms after its first answer), or when every protocol said no; never while a more preferred
   * one has not answered yet (then only the deadline ends it).
   */
  private probeReadyAt(): number {
    for (const p of this.protocols) {
      const a = this.svc(p).available;
      if (a === false) continue;
      if (a === undefined) return Infinity;
      return p === 'upnp' ? (this.upnp.firstAt ?? 0) + PORTMAP.UPNP_COLLECT_MS : -Infinity;
    }
    return -Infinity;
  }

  /**
   * @internal Records an epoch. On a reset (gateway reboot) while we hold a mapping from that protocol and
   * nothing is in flight, re-creates it at once with the same port; a request in flight gets a fresh answer.
   */
  trackEpoch(p: 'pmp' | 'pcp', epoch: number, now: number): void {
    const s = p === 'pmp' ? this.pmp : this.pcp;
    const prev = s.epoch;
    s.epoch = { epoch, at: now };
    if (!prev || !epochReset(p, prev, epoch, now)) return;
    this.counters.inc('epochResets');
    this.event('epoch-reset', { protocol: p, previous: prev.epoch, epoch });
    if (this.phase === 'mapped' && this.current?.protocol === p && !this.op) this.startOp(p, 'renew', now);
  }

  /** @internal NAT-PMP reported the public address; a NAT-PMP mapping follows it. */
  onPublicIp(ip: string): void {
    this.pmp.publicIp = ip;
    const cur = this.current;
    if (!cur || cur.protocol !== 'pmp' || cur.external.ip === ip) return;
    const next: Held = { ...cur, external: { ip, port: cur.external.port } };
    this.current = next;
    this.event('public-ip', { previous: cur.external.ip, ip });
    this.out.push({
      kind: 'mapping',
      mapping: publicView(next),
      previous: publicView(cur),
      reason: 'public-ip-changed',
    });
  }

  // ---- private ------------------------------------------------------------------------------------------------

  private beginProbe(now: number): void {
    this.phase = 'probing';
    this.op = { type: 'probe', deadline: now + PORTMAP.PROBE_TIMEOUT_MS };
    for (const s of [this.pmp, this.pcp, this.upnp]) {
      s.available = undefined;
      s.reason = undefined;
    }
    this.upnp.locations = [];
    this.upnp.firstAt = undefined;
    this.counters.inc('probes');
    this.event('probe', { gateway: this.gateway, protocols: this.protocols });
    if (this.protocols.includes('pmp')) this.sendGateway(encodeNatPmpPublicAddressRequest());
    if (this.protocols.includes('pcp')) this.sendGateway(encodePcpAnnounceRequest({ clientIp: this.localAddress }));
    if (!this.protocols.includes('upnp')) return;
    const gw = { ip: this.gateway, port: UPNP.SSDP_PORT };
    this.out.push({ kind: 'send', socket: 'ssdp', to: gw, bytes: encodeMSearch({ st: UPNP.ST_IGD1 }) });
    if (!this.multicast) return;
    const group = { ip: UPNP.SSDP_MULTICAST_IP, port: UPNP.SSDP_PORT };
    for (const st of [UPNP.ST_ALL, UPNP.ST_IGD1])
      this.out.push({ kind: 'send', socket: 'ssdp', to: group, bytes: encodeMSearch({ st }) });
  }

  private tryNext(now: number): void {
    const p = this.protocols.find((x) => this.svc(x).available === true && !this.tried.has(x));
    if (p) {
      this.tried.add(p);
      this.phase = 'mapping';
      return this.startOp(p, 'create', now);
    }
    if (this.tried.size === 0) {
      const why = this.protocols.map((x) => `${x}: ${this.svc(x).reason ?? 'no answer'}`).join(', ');
      this.lastError = new PortmapError(
        PortmapFailure.NO_SERVICE,
        undefined,
        `no port mapping at ${this.gateway} (${why})`,
      );
    }
    this.phase = 'waiting';
    this.op = undefined;
    this.retryAt = now + this.retryDelay;
    this.event('waiting', { retryInMs: this.retryDelay, error: this.lastError?.message });
    this.retryDelay = Math.min(this.retryDelay * 2, PORTMAP.RETRY_MAX_MS);
  }

  private startOp(p: PortmapProtocol, purpose: 'create' | 'renew', now: number): void {
    const cur = purpose === 'renew' ? this.current : undefined;
    if (p === 'upnp') upnpStartStep(this, purpose, cur, now);
    else udpStartOp(this, p, purpose, cur, now);
  }

  private lose(reason: 'expired' | 'refused', now: number): void {
    const prev = this.current;
    this.current = undefined;
    this.renewAt = this.epochCheckAt = Infinity;
    this.counters.inc('mappingsLost');
    if (reason === 'expired')
      this.lastError = new PortmapError(
        PortmapFailure.EXPIRED,
        prev?.protocol,
        'mapping expired before it was renewed',
      );
    if (prev) this.out.push({ kind: 'mapping', mapping: undefined, previous: publicView(prev), reason });
    this.beginProbe(now);
  }

  private svc(p: PortmapProtocol): { available: boolean | undefined; reason: string | undefined } {
    return p === 'pmp' ? this.pmp : p === 'pcp' ? this.pcp : this.upnp;
  }

  private flush(): PortmapAction[] {
    const out = this.out;
    this.out = [];
    return out;
  }
}

function publicView(h: Held): PortMapping {
  const { protocol, external, internalPort, expiresAt, lifetimeS, permanent } = h;
  return { protocol, external, internalPort, expiresAt, lifetimeS, permanent };
}
