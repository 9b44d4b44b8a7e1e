/** The DERP server: `DerpServer.listen(...)`. See server.ts. */
export {
  DerpServer,
  type DerpServerOptions,
  type DerpServerStats,
  type VerifyClient,
  type AdmissionRequest,
} from './server.js';
export { ServerCounters } from './relay.js';
