import { MAX_DATAGRAM } from 'meshsock';

/** mesh-node's version, printed by `mesh-node --version`. */
export const MESH_NODE_VERSION = '0.1.0';
/** The largest datagram meshsock carries, which bounds the WireGuard packets mesh-node sends through it. */
export const MAX_WIRE_DATAGRAM = MAX_DATAGRAM;
