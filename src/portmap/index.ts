/**
 * Port mapping: NAT-PMP (RFC 6886), PCP (RFC 6887) and UPnP IGD, so a peer behind a home router gets a mapped
 * public endpoint for its UDP port. `PortMapper` is the object to use; the codecs and the sans-IO core are
 * exported for tests, tools and other drivers.
 */
export {
  PortMapper,
  readDefaultGateway,
  type PortMapperOptions,
  type PortMapperEvents,
  type PortMapperStatus,
} from './port-mapper.js';
export type { PortMapperCounter } from './port-mapper.js';
export { PortmapCore, type PortmapCoreOptions } from './core.js';
export type {
  HttpResult,
  MappingChangeReason,
  PortMapping,
  PortmapAction,
  PortmapCoreStatus,
  PortmapCounter,
  PortmapPhase,
  ServiceStatus,
} from './types.js';
export { PortmapError, PortmapFailure } from './errors.js';
export {
  NAT_PMP,
  NatPmpResult,
  PCP,
  PcpResult,
  UPNP,
  PORTMAP,
  PORTMAP_PROTOCOLS,
  type PortmapProtocol,
} from './constants.js';
export {
  encodeNatPmpPublicAddressRequest,
  encodeNatPmpMapRequest,
  decodeNatPmpRequest,
  encodeNatPmpResponse,
  decodeNatPmpResponse,
  isNatPmpResponse,
  natPmpResultName,
  type NatPmpRequest,
  type NatPmpResponse,
} from './nat-pmp.js';
export {
  encodePcpAnnounceRequest,
  encodePcpMapRequest,
  decodePcpRequest,
  encodePcpResponse,
  decodePcpResponse,
  isPcpResponse,
  pcpResultName,
  type PcpMapFields,
  type PcpRequest,
  type PcpResponse,
} from './pcp.js';
export { encodeMSearch, decodeSsdpResponse, isSsdpResponse, isIgdAnswer, type SsdpResponse } from './ssdp.js';
export {
  parseIgdDescription,
  encodeSoapRequest,
  decodeSoapResponse,
  addPortMappingArgs,
  deletePortMappingArgs,
  type IgdDescription,
  type IgdService,
  type SoapResult,
} from './igd.js';
export { epochReset, type EpochSample } from './epoch.js';
export { defaultGatewayFromRoutes, parseProcNetRoute, isRfc1918, explicitGatewayProblem } from './gateway.js';
