export type { Signaller } from './signaller.js';
export { MemorySignalHub } from './memory.js';
export {
  SIGNAL_MAGIC,
  isSignalEnvelope,
  openSignal,
  sealSignal,
  signalSender,
  type SignalContent,
} from './envelope.js';
export { SignalRelayServer, WebSocketSignaller } from './websocket.js';
