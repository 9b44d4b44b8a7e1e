/**
 * The UPnP IGD steps of the port-mapper core (split from core.ts to keep each file small; same sans-IO rules).
 *
 *   describe  GET each SSDP LOCATION in turn (IGD answers first) until one yields a WAN connection service whose
 *             control URL is on the gateway (WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1)
 *   add       AddAnyPortMapping (WANIPConnection:2) or AddPortMapping, external port = last one or random,
 *             lease 7200 s; error 402/725 → retry with lease 0 (permanent); 718 → retry with another random port
 *             (at most 3 times); 401/602 on AddAnyPortMapping → retry with AddPortMapping
 *   external  GetExternalIPAddress; 0.0.0.0, loopback and the like are rejected
 *   delete    DeletePortMapping on close
 *
 * A renewal starts at `add` with the same service and port. The driver enforces each request's timeout and
 * always reports a result; `stepDeadline` is a backstop in case it does not.
 */
import { randomFloat, type RandomSource } from '../internal/clock.js';
import { PORTMAP, UPNP } from './constants.js';
import type { PortmapCore } from './core.js';
import { decodeSsdpResponse, isIgdAnswer, isSsdpResponse } from './ssdp.js';
import type { Held, HttpResult } from './types.js';
import { PortmapError, PortmapFailure } from './errors.js';
import { usablePublicIp } from './gateway.js';
import {
  addPortMappingArgs,
  decodeSoapResponse,
  deletePortMappingArgs,
  encodeSoapRequest,
  type IgdService,
  parseIgdDescription,
  type SoapArg,
} from './igd.js';

/** A UPnP operation in flight. */
export interface UpnpOp {
  readonly type: 'upnp';
  readonly purpose: 'create' | 'renew' | 'release';
  step: 'describe' | 'add' | 'external-ip' | 'delete';
  httpId: number;
  stepDeadline: number;
  locationIndex: number;
  service: IgdService | undefined;
  externalPort: number;
  leaseS: number;
  useAny: boolean;
  conflictRetries: number;
}

/** Backstop beyond the driver's own HTTP timeout. */
const BACKSTOP_MS = 500;

/** A random external port in [1024, 65535] (tailscale-protocols.md §5). */
export function randomUpnpPort(rng: RandomSource): number {
  const span = UPNP.RANDOM_PORT_MAX - UPNP.RANDOM_PORT_MIN + 1;
  return UPNP.RANDOM_PORT_MIN + Math.min(span - 1, Math.floor(randomFloat(rng) * span));
}

function wantsAny(s: IgdService | undefined): boolean {
  return s !== undefined && s.kind === 'WANIPConnection' && s.version >= 2;
}

/** Starts creating (no `cur`) or renewing (`cur`) a UPnP mapping. */
export function upnpStartStep(
  core: PortmapCore,
  purpose: 'create' | 'renew',
  cur: Held | undefined,
  now: number,
): void {
  const d = core.upnp.described;
  let service = cur?.service;
  if (!service && d && core.upnp.locations.some((l) => l.url === d.location)) service = d.service;
  const op: UpnpOp = {
    type: 'upnp',
    purpose,
    step: service ? 'add' : 'describe',
    httpId: 0,
    stepDeadline: 0,
    locationIndex: 0,
    service,
    externalPort: cur ? cur.external.port : (core.prevPort ?? randomUpnpPort(core.rng)),
    leaseS: cur?.permanent ? 0 : core.lifetimeS,
    useAny: wantsAny(service),
    conflictRetries: 0,
  };
  core.op = op;
  sendStep(core, op, now);
}

/** Starts DeletePortMapping for `externalPort` on close. */
export function upnpStartRelease(core: PortmapCore, service: IgdService, externalPort: number, now: number): void {
  const op: UpnpOp = {
    type: 'upnp',
    purpose: 'release',
    step: 'delete',
    httpId: 0,
    stepDeadline: 0,
    locationIndex: 0,
    service,
    externalPort,
    leaseS: 0,
    useAny: false,
    conflictRetries: 0,
  };
  core.op = op;
  sendStep(core, op, now);
}

function sendStep(core: PortmapCore, op: UpnpOp, now: number): void {
  const timeoutMs = op.purpose === 'release' ? PORTMAP.RELEASE_TIMEOUT_MS : PORTMAP.HTTP_TIMEOUT_MS;
  op.httpId = core.httpId();
  op.stepDeadline = now + timeoutMs + BACKSTOP_MS;
  if (op.step === 'describe') {
    const loc = core.upnp.locations[op.locationIndex];
    if (!loc)
      return core.fail(
        new PortmapError(PortmapFailure.BAD_ANSWER, 'upnp', 'no usable UPnP device description on the gateway'),
        now,
      );
    core.emit({
      kind: 'http',
      id: op.httpId,
      method: 'GET',
      url: loc.url,
      headers: {},
      body: undefined,
      timeoutMs,
      maxBytes: UPNP.MAX_DESCRIPTION_BYTES,
    });
    return;
  }
  const service = op.service!;
  let action: string;
  let args: SoapArg[] = [];
  if (op.step === 'add') {
    action = op.useAny ? 'AddAnyPortMapping' : 'AddPortMapping';
    args = addPortMappingArgs({
      externalPort: op.externalPort,
      internalPort: core.internalPort,
      internalClient: core.localAddress,
      leaseS: op.leaseS,
    });
  } else if (op.step === 'external-ip') {
    action = 'GetExternalIPAddress';
  } else {
    action = 'DeletePortMapping';
    args = deletePortMappingArgs(op.externalPort);
  }
  post(core, op.httpId, service, action, args, timeoutMs);
}

function post(
  core: PortmapCore,
  id: number,
  service: IgdService,
  action: string,
  args: SoapArg[],
  timeoutMs: number,
): void {
  const soap = encodeSoapRequest(service.serviceType, action, args);
  core.emit({
    kind: 'http',
    id,
    method: 'POST',
    url: service.controlUrl,
    headers: { 'Content-Type': soap.contentType, SOAPAction: soap.soapAction },
    body: soap.body,
    timeoutMs,
    maxBytes: UPNP.MAX_SOAP_BYTES,
  });
}

/** Feeds the result of the current step's HTTP request. */
export function upnpHttpResult(core: PortmapCore, op: UpnpOp, res: HttpResult, now: number): void {
  if (!res.ok) {
    core.counters.inc('httpErrors');
    if (op.step === 'describe') {
      op.locationIndex++;
      return sendStep(core, op, now);
    }
    if (op.step === 'delete') return core.finishClose();
    if (op.step === 'add') core.upnp.described = undefined; // the gateway may have moved: describe again next time
    return core.fail(new PortmapError(PortmapFailure.HTTP, 'upnp', `${op.step}: ${res.error}`), now);
  }
  switch (op.step) {
    case 'describe': {
      const loc = core.upnp.locations[op.locationIndex]!;
      let service: IgdService | undefined;
      if (res.status === 200) {
        try {
          const d = parseIgdDescription(res.body, loc.url);
          service = d.services.find((s) => new URL(s.controlUrl).hostname === core.gateway);
          if (service) core.upnp.described = { location: loc.url, service, friendlyName: d.friendlyName };
        } catch {
          service = undefined;
        }
      }
      if (!service) {
        core.counters.inc('droppedMalformed');
        op.locationIndex++;
        return sendStep(core, op, now);
      }
      op.service = service;
      op.useAny = wantsAny(service);
      op.step = 'add';
      return sendStep(core, op, now);
    }
    case 'add': {
      const action = op.useAny ? 'AddAnyPortMapping' : 'AddPortMapping';
      const r = decodeSoapResponse(res.status, res.body, action);
      if (r.ok) {
        if (op.useAny) {
          const p = Number(r.values.NewReservedPort);
          if (!Number.isInteger(p) || p < 1 || p > 65535)
            return core.fail(
              new PortmapError(PortmapFailure.BAD_ANSWER, 'upnp', 'AddAnyPortMapping without a port'),
              now,
            );
          op.externalPort = p;
        }
        op.step = 'external-ip';
        return sendStep(core, op, now);
      }
      core.counters.inc('soapFaults');
      const code = r.errorCode;
      if ((code === UPNP.ERR_INVALID_ARGS || code === UPNP.ERR_ONLY_PERMANENT_LEASES) && op.leaseS !== 0) {
        core.counters.inc('leaseZeroRetries');
        op.leaseS = 0;
        return sendStep(core, op, now);
      }
      if (code === UPNP.ERR_CONFLICT && op.conflictRetries < PORTMAP.UPNP_CONFLICT_RETRIES) {
        core.counters.inc('conflictRetries');
        op.conflictRetries++;
        op.externalPort = randomUpnpPort(core.rng);
        return sendStep(core, op, now);
      }
      if (op.useAny && (code === 401 || code === 602)) {
        op.useAny = false; // 401 Invalid Action / 602 Optional Action Not Implemented: fall back to AddPortMapping
        return sendStep(core, op, now);
      }
      const what = code !== undefined ? `error ${code}` : `HTTP ${r.httpStatus}`;
      return core.fail(
        new PortmapError(
          PortmapFailure.REFUSED,
          'upnp',
          `${action} refused: ${what} ${r.errorDescription ?? ''}`.trim(),
          code ?? r.httpStatus,
        ),
        now,
      );
    }
    case 'external-ip': {
      const r = decodeSoapResponse(res.status, res.body, 'GetExternalIPAddress');
      const ip = r.ok ? r.values.NewExternalIPAddress : undefined;
      if (!r.ok) core.counters.inc('soapFaults');
      if (ip === undefined || !usablePublicIp(ip)) {
        // The mapping exists on the gateway but is useless to us: remove it (best effort, result not awaited).
        post(
          core,
          core.httpId(),
          op.service!,
          'DeletePortMapping',
          deletePortMappingArgs(op.externalPort),
          PORTMAP.HTTP_TIMEOUT_MS,
        );
        return core.fail(
          new PortmapError(PortmapFailure.BAD_ANSWER, 'upnp', `GetExternalIPAddress gave ${ip ?? 'an error'}`),
          now,
        );
      }
      return core.install(now, 'upnp', { ip, port: op.externalPort }, op.leaseS || core.lifetimeS, op.leaseS === 0, {
        service: op.service!,
      });
    }
    case 'delete': {
      if (decodeSoapResponse(res.status, res.body, 'DeletePortMapping').ok) core.counters.inc('released');
      return core.finishClose();
    }
  }
}

/** An SSDP answer from the gateway: remember its description URL (IGD answers first, at most 10). */
export function onSsdpAnswer(core: PortmapCore, bytes: Uint8Array, now: number): void {
  if (!isSsdpResponse(bytes)) {
    core.counters.inc('droppedMalformed');
    return;
  }
  const res = decodeSsdpResponse(bytes);
  core.counters.inc('ssdpResponses');
  let url: URL | undefined;
  try {
    url = res.location ? new URL(res.location) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || url.protocol !== 'http:' || url.hostname !== core.gateway) {
    core.counters.inc('droppedForeignLocation');
    return;
  }
  if (core.closing || !core.protocols.includes('upnp')) return;
  const u = core.upnp;
  const igd = isIgdAnswer(res);
  const known = u.locations.find((l) => l.url === url.href);
  if (known) known.igd ||= igd;
  else if (u.locations.length < UPNP.MAX_LOCATIONS) u.locations.push({ url: url.href, igd });
  u.locations.sort((a, b) => Number(b.igd) - Number(a.igd) || (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
  u.available = true;
  u.reason = undefined;
  u.firstAt ??= now;
  core.maybeEndProbe(now);
}
