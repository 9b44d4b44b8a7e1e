/**
 * The NAT-PMP and PCP steps of the port-mapper core (split from core.ts to keep each file small; same sans-IO
 * rules). Both protocols talk to gateway:5351 over UDP and share the request/retransmit shape:
 *
 *   request   NAT-PMP map request (plus a public-address request while the public IP is unknown), or a PCP MAP
 *             request with a fresh 12-byte nonce (renewals and the release repeat the nonce); asks for the last
 *             external port (first time: the internal port) and lifetime 7200 s
 *   resend    at 250 ms, then doubling, until answered or 4 s (release: 1 s) have passed (RFC 6886 §3.1)
 *   answer    success → mapped; an error result → this protocol is refused, the core tries the next one
 *   release   NAT-PMP: lifetime 0 + suggested port 0 (RFC 6886 §3.4); PCP: MAP with lifetime 0, same nonce (§15)
 *
 * Answers are matched by opcode, internal port and (PCP) nonce; anything else is dropped and counted. Each
 * answer's epoch feeds the reboot check (epoch.ts). Cross-version answers tell us what the box speaks: a
 * NAT-PMP "unsupported version" answer to our PCP request means NAT-PMP only, a PCP UNSUPP_VERSION answer to
 * our NAT-PMP request means PCP only.
 */
import { type AddrPort } from '../internal/addr.js';
import { NatPmpResult, PCP, PcpResult, PORTMAP } from './constants.js';
import type { PortmapCore } from './core.js';
import { PortmapError, PortmapFailure } from './errors.js';
import { usablePublicIp } from './gateway.js';
import {
  encodeNatPmpMapRequest,
  encodeNatPmpPublicAddressRequest,
  type NatPmpResponse,
  natPmpResultName,
} from './nat-pmp.js';
import { encodePcpAnnounceRequest, encodePcpMapRequest, type PcpResponse, pcpResultName } from './pcp.js';
import type { Held } from './types.js';

/** A NAT-PMP or PCP request in flight. */
export interface UdpOp {
  readonly type: 'pmp' | 'pcp';
  readonly purpose: 'create' | 'renew' | 'release';
  readonly bytes: Uint8Array;
  /** NAT-PMP: the public-address request, resent until answered. */
  addrBytes: Uint8Array | undefined;
  /** PCP: the mapping nonce. */
  readonly nonce: Uint8Array | undefined;
  nextSendAt: number;
  interval: number;
  readonly deadline: number;
  /** NAT-PMP: the map answer, kept while the public address is still unknown. */
  got: { externalPort: number; lifetimeS: number } | undefined;
}

function pcpMap(core: PortmapCore, nonce: Uint8Array, lifetime: number, ext: AddrPort): Uint8Array {
  return encodePcpMapRequest({
    lifetime,
    clientIp: core.localAddress,
    nonce,
    protocol: PCP.PROTO_UDP,
    internalPort: core.internalPort,
    externalPort: ext.port,
    externalIp: ext.ip,
  });
}

function start(
  core: PortmapCore,
  o: Pick<UdpOp, 'type' | 'purpose' | 'bytes' | 'addrBytes' | 'nonce'>,
  now: number,
  timeoutMs: number,
): void {
  core.op = {
    ...o,
    nextSendAt: now + PORTMAP.RETRANSMIT_INITIAL_MS,
    interval: PORTMAP.RETRANSMIT_INITIAL_MS,
    deadline: now + timeoutMs,
    got: undefined,
  };
  core.sendGateway(o.bytes);
  if (o.addrBytes) core.sendGateway(o.addrBytes);
}

/** Starts creating (no `cur`) or renewing (`cur`) a NAT-PMP or PCP mapping. */
export function udpStartOp(
  core: PortmapCore,
  p: 'pmp' | 'pcp',
  purpose: 'create' | 'renew',
  cur: Held | undefined,
  now: number,
): void {
  const port = cur ? cur.external.port : (core.prevPort ?? core.internalPort);
  if (p === 'pmp') {
    const bytes = encodeNatPmpMapRequest({
      protocol: 'udp',
      internalPort: core.internalPort,
      suggestedExternalPort: port,
      lifetime: core.lifetimeS,
    });
    const addrBytes = core.pmp.publicIp === undefined ? encodeNatPmpPublicAddressRequest() : undefined;
    return start(core, { type: p, purpose, bytes, addrBytes, nonce: undefined }, now, PORTMAP.REQUEST_TIMEOUT_MS);
  }
  const nonce = cur?.nonce ?? Uint8Array.from(core.rng(PCP.NONCE_LEN));
  const bytes = pcpMap(core, nonce, core.lifetimeS, { ip: cur?.external.ip ?? '0.0.0.0', port });
  start(core, { type: p, purpose, bytes, addrBytes: undefined, nonce }, now, PORTMAP.REQUEST_TIMEOUT_MS);
}

/** Starts releasing: NAT-PMP lifetime 0, or PCP MAP lifetime 0 with the mapping's nonce. */
export function udpStartRelease(
  core: PortmapCore,
  p: 'pmp' | 'pcp',
  nonce: Uint8Array | undefined,
  ext: AddrPort | undefined,
  now: number,
): void {
  const bytes =
    p === 'pmp'
      ? encodeNatPmpMapRequest({
          protocol: 'udp',
          internalPort: core.internalPort,
          suggestedExternalPort: 0,
          lifetime: 0,
        })
      : pcpMap(core, nonce ?? Uint8Array.from(core.rng(PCP.NONCE_LEN)), 0, ext ?? { ip: '0.0.0.0', port: 0 });
  start(core, { type: p, purpose: 'release', bytes, addrBytes: undefined, nonce }, now, PORTMAP.RELEASE_TIMEOUT_MS);
}

/** Retransmits, or gives up at the deadline. */
export function udpTimeout(core: PortmapCore, op: UdpOp, now: number): void {
  if (now >= op.deadline) {
    if (op.purpose === 'release') return core.finishClose();
    return core.fail(new PortmapError(PortmapFailure.NO_ANSWER, op.type, `no answer from ${core.gateway}`), now);
  }
  if (now < op.nextSendAt) return;
  core.counters.inc('retransmits');
  if (op.got === undefined) core.sendGateway(op.bytes);
  if (op.addrBytes) core.sendGateway(op.addrBytes);
  op.interval *= 2;
  op.nextSendAt = now + op.interval;
}

/** The periodic epoch check while mapped: a public-address request (NAT-PMP) or an ANNOUNCE (PCP). */
export function udpEpochCheck(core: PortmapCore, p: 'pmp' | 'pcp'): void {
  core.counters.inc('epochChecks');
  core.sendGateway(
    p === 'pmp' ? encodeNatPmpPublicAddressRequest() : encodePcpAnnounceRequest({ clientIp: core.localAddress }),
  );
}

/** A NAT-PMP answer from the gateway. */
export function onPmpAnswer(core: PortmapCore, res: NatPmpResponse, now: number): void {
  core.counters.inc('pmpResponses');
  const op = core.op;
  if (res.resultCode === NatPmpResult.UNSUPPORTED_VERSION) {
    // A NAT-PMP-only gateway answering our PCP request (version 2) in NAT-PMP's format.
    core.pcp.available = false;
    core.pcp.reason = 'gateway speaks only NAT-PMP';
    if (op?.type !== 'pcp') return core.maybeEndProbe(now);
    if (op.purpose === 'release') return core.finishClose();
    return core.fail(
      new PortmapError(PortmapFailure.REFUSED, 'pcp', 'gateway speaks only NAT-PMP', res.resultCode),
      now,
    );
  }
  core.trackEpoch('pmp', res.epoch, now);
  if (res.op === 'public-address') {
    if (core.closing) return;
    const ip = res.publicIp;
    const ok = res.resultCode === NatPmpResult.SUCCESS;
    const bad = ok && (ip === undefined || !usablePublicIp(ip));
    core.pmp.available = ok && !bad;
    core.pmp.reason = bad ? `public address ${ip} is not usable` : ok ? undefined : natPmpResultName(res.resultCode);
    if (core.pmp.available) core.onPublicIp(ip!);
    if (op?.type === 'pmp') {
      op.addrBytes = undefined;
      if (!core.pmp.available)
        return core.fail(
          new PortmapError(PortmapFailure.BAD_ANSWER, 'pmp', core.pmp.reason ?? 'no public address', res.resultCode),
          now,
        );
      if (op.got) return core.install(now, 'pmp', { ip: ip!, port: op.got.externalPort }, op.got.lifetimeS, false, {});
    }
    return core.maybeEndProbe(now);
  }
  if (
    op?.type !== 'pmp' ||
    res.protocol !== 'udp' ||
    (res.internalPort !== undefined && res.internalPort !== core.internalPort)
  ) {
    core.counters.inc('droppedUnexpected');
    return;
  }
  if (op.purpose === 'release') {
    if (res.resultCode === NatPmpResult.SUCCESS) core.counters.inc('released');
    return core.finishClose();
  }
  if (res.resultCode !== NatPmpResult.SUCCESS)
    return core.fail(
      new PortmapError(
        PortmapFailure.REFUSED,
        'pmp',
        `map refused: ${natPmpResultName(res.resultCode)}`,
        res.resultCode,
      ),
      now,
    );
  if (!res.externalPort || !res.lifetime)
    return core.fail(new PortmapError(PortmapFailure.BAD_ANSWER, 'pmp', 'map answer with port or lifetime 0'), now);
  op.got = { externalPort: res.externalPort, lifetimeS: res.lifetime };
  const ip = core.pmp.publicIp;
  if (ip !== undefined) core.install(now, 'pmp', { ip, port: res.externalPort }, res.lifetime, false, {});
}

function sameNonce(a: Uint8Array, b: Uint8Array | undefined): boolean {
  if (!b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** A PCP answer from the gateway. */
export function onPcpAnswer(core: PortmapCore, res: PcpResponse, now: number): void {
  core.counters.inc('pcpResponses');
  const op = core.op;
  core.trackEpoch('pcp', res.epoch, now);
  if (res.opcode === 'announce') {
    if (res.resultCode === PcpResult.UNSUPP_VERSION) {
      // A PCP-only gateway answering our NAT-PMP request (version 0) in PCP's format.
      core.pmp.available = false;
      core.pmp.reason = 'gateway speaks only PCP';
      if (op?.type === 'pmp' && op.purpose === 'release') return core.finishClose();
      if (op?.type === 'pmp')
        return core.fail(
          new PortmapError(PortmapFailure.REFUSED, 'pmp', 'gateway speaks only PCP', res.resultCode),
          now,
        );
    } else if (!core.closing) {
      core.pcp.available = res.resultCode === PcpResult.SUCCESS;
      core.pcp.reason = res.resultCode ? pcpResultName(res.resultCode) : undefined;
    }
    return core.maybeEndProbe(now);
  }
  const m = res.map;
  if (
    res.opcode !== 'map' ||
    op?.type !== 'pcp' ||
    (m && (!sameNonce(m.nonce, op.nonce) || m.protocol !== PCP.PROTO_UDP || m.internalPort !== core.internalPort))
  ) {
    core.counters.inc('droppedUnexpected');
    return;
  }
  if (op.purpose === 'release') {
    if (res.resultCode === PcpResult.SUCCESS) core.counters.inc('released');
    return core.finishClose();
  }
  if (res.resultCode !== PcpResult.SUCCESS || !m) {
    if (res.resultCode === PcpResult.NOT_AUTHORIZED || res.resultCode === PcpResult.ADDRESS_MISMATCH) {
      core.pcp.available = false;
      core.pcp.reason = pcpResultName(res.resultCode);
    }
    return core.fail(
      new PortmapError(PortmapFailure.REFUSED, 'pcp', `map refused: ${pcpResultName(res.resultCode)}`, res.resultCode),
      now,
    );
  }
  if (!m.externalPort || !res.lifetime || !usablePublicIp(m.externalIp))
    return core.fail(
      new PortmapError(
        PortmapFailure.BAD_ANSWER,
        'pcp',
        `unusable answer ${m.externalIp}:${m.externalPort}, lifetime ${res.lifetime}`,
      ),
      now,
    );
  core.install(now, 'pcp', { ip: m.externalIp, port: m.externalPort }, res.lifetime, false, { nonce: op.nonce! });
}
