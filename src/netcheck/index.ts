/**
 * netcheck: UDP reachability, mapped endpoints, NAT mapping behaviour, per-region DERP latency and the home region
 * (tailscale-protocols.md §4). `Netcheck` runs on the caller's socket; `openStandaloneNetcheck` on its own.
 */
export { NETCHECK } from './constants.js';
export {
  type HostFamilies,
  type IpFamily,
  type LastReportLatency,
  type Probe,
  type ProbePlan,
  isTestNode,
  makeProbePlan,
  makeProbePlanInitial,
  probeSetKey,
  sortRegionsByLatency,
} from './plan.js';
export {
  type NetcheckReport,
  type StunObservation,
  PORTMAP_NOT_CHECKED,
  ReportBuilder,
  reportGlobalAddrs,
  reportToJSON,
} from './report.js';
export { type NetcheckAction, type NetcheckRunOptions, NetcheckRun } from './run.js';
export { type HttpLatencyFn, type HttpLatencyResult, measureHttpLatency } from './http-latency.js';
export {
  type GetReportOptions,
  type NetcheckLookup,
  type NetcheckOptions,
  type StandaloneNetcheck,
  type StandaloneNetcheckOptions,
  Netcheck,
  detectHostFamilies,
  openStandaloneNetcheck,
  probeOsHasIPv6,
} from './netcheck.js';
