/**
 * meshsock — direct UDP between two machines anywhere, addressed by public key.
 *
 * ```ts
 * import { MagicSocket, PrivateKey } from 'meshsock';
 * const sock = await MagicSocket.create({ privateKey: PrivateKey.generate(), stunServers: ['203.0.113.1:3478'], signaller });
 * sock.addPeer(peerKey);
 * sock.on('message', (data, from, path) => …);
 * sock.send(peerKey, data);
 * ```
 */
export { MagicSocket } from './magicsock/magic-socket.js';
export { MAX_DATAGRAM, type MagicSocketOptions } from './magicsock/options.js';
export type { PeerStatus, SocketStatus } from './magicsock/status.js';
export type { PathInfo, PeerHints } from './magicsock/peer-state.js';
export type { ReceivedMessage } from './magicsock/message-iterator.js';
export type { RelayTransport } from './magicsock/relay.js';
export { NotDirectReason } from './magicsock/endpoint.js';
export { MAGICSOCK } from './magicsock/constants.js';
export { PrivateKey, PublicKey, SharedKey, sealTo, openFrom } from './key/index.js';
export { MeshsockError, DecodeError, ErrorCode, isMeshsockError } from './errors.js';
export { MemorySignalHub, SignalRelayServer, WebSocketSignaller, type Signaller } from './signal/index.js';
export { StunServer, StunClient, stunQuery } from './stun/index.js';
export { DerpServer } from './derp/server/index.js';
export { DerpConn } from './derp/conn.js';
export { PortMapper, PortmapError, type PortMapping } from './portmap/index.js';
export { DerpClient } from './derp/derp-client.js';
export { parseDerpMap, type DerpMap, type DerpMapInput } from './derp/derp-map.js';
export { Netcheck, openStandaloneNetcheck } from './netcheck/index.js';
export type { NetcheckReport } from './netcheck/report.js';
export type { AddrPort } from './internal/addr.js';
export { channels } from './internal/diagnostics.js';
