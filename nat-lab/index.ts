/**
 * nat-lab: NAT types reproduced in Linux network namespaces (needs root). See nat-lab/README.md.
 */
export {
  Lab,
  createLab,
  createPairLab,
  parseJsonLines,
  DEFAULT_UDP_TIMEOUTS,
  type LabSpec,
  type SiteSpec,
} from './topology.js';
export type { HostInfo, LabState, NodeInfo, RouterInfo, SiteInfo, NodeRole } from './state.js';
export { LabProcess, type SpawnOptions, type ProcessRecord, type ExitInfo } from './process.js';
export {
  PROFILES,
  PROFILE_NAMES,
  parseProfile,
  formatProfile,
  expectedBehaviour,
  natRuleset,
  type ProfileName,
  type ProfileSpec,
  type Behaviour,
  type Mapping,
  type Filtering,
  type NatMode,
} from './profiles.js';
export {
  LINK_PRESETS,
  LINK_PRESET_NAMES,
  parseLink,
  describeLink,
  linkMechanism,
  type LinkSpec,
  type LinkPresetName,
  type LinkMechanism,
} from './link.js';
export {
  natReboot,
  setUdpTimeouts,
  setLink,
  roam,
  restartProcess,
  blockUdp,
  runFault,
  FAULTS,
  type FaultName,
} from './faults.js';
export {
  measureSite,
  selfTest,
  selfTestLab,
  compareBehaviour,
  describeFailures,
  type Measured,
  type SelfTestResult,
  type Check,
} from './selftest.js';
export {
  runMatrix,
  runCell,
  expectedOutcome,
  meshsockPeer,
  meshsockDerp,
  STAND_IN_PEER_CAPS,
  MESHSOCK_PEER_CAPS,
  matrixCells,
  writeMatrixReports,
  MATRIX_PROFILES,
  type MatrixOptions,
  type MatrixReport,
  type CellResult,
  type Expectation,
  type PeerProgram,
  type PeerCapabilities,
  type DerpProgram,
  type PeerEvent,
  type Outcome,
} from './matrix.js';
export { matrixMarkdown, matrixHtml } from './matrix-report.js';
export {
  startRelay,
  startTraffic,
  Traffic,
  TrafficPeer,
  type TrafficOptions,
  type PeerStats,
  type Gap,
} from './traffic.js';
export {
  lostDatagrams,
  attributeLoss,
  describeRuns,
  peerTimeline,
  formatTimeline,
  type LostDatagram,
  type LossWindow,
  type TimelineEntry,
} from './loss.js';
export { leftovers, teardownSync, knownPrefixes } from './cleanup.js';
export { labSupport, type LabSupport } from './env.js';
export { getNodeTools, getMeshsockPrograms, getDelayLine, type MeshsockPrograms } from './build-tools.js';
export { PLAN, RUN_ROOT } from './plan.js';
