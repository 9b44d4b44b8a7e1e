/**
 * DERP protocol constants, wire-compatible with Tailscale DERP v2 (tailscale-protocols.md §2). One table; each value
 * carries its reason.
 */

/** "DERP🔑": first 8 bytes of the ServerKey frame, so a client knows it reached a DERP server. */
export const DERP_MAGIC = new Uint8Array([0x44, 0x45, 0x52, 0x50, 0xf0, 0x9f, 0x94, 0x91]);

export const DERP = {
  /** Frame header: type u8 + length u32 BE. */
  FRAME_HEADER_LEN: 5,
  /** X25519 node public key length. */
  KEY_LEN: 32,
  /** NaCl box nonce length, used by ClientInfo/ServerInfo. */
  NONCE_LEN: 24,
  /** Largest packet payload a client may send or receive (Tailscale's MaxPacketSize). */
  MAX_PACKET_SIZE: 64 << 10,
  /** Largest JSON info blob accepted in ClientInfo/ServerInfo (Tailscale's MaxInfoLen). */
  MAX_INFO_LEN: 1 << 20,
  /** Largest frame a client accepts from a server (client-side Recv cap). */
  MAX_CLIENT_FRAME: 1 << 20,
  /** Largest ClientInfo the server reads (server-side cap). */
  MAX_CLIENT_INFO_LEN: 256 << 10,
  /** Largest Ping payload the server accepts. */
  MAX_PING_LEN: 1000,
  /** Protocol version: 2 = RecvPacket carries the source key. */
  PROTOCOL_VERSION: 2,
  /** Server keepalive period; jitter of up to 5 s is added so keepalives of many clients spread out. */
  KEEPALIVE_MS: 60_000,
  KEEPALIVE_JITTER_MS: 5_000,
  /** Client read timeout: two missed keepalives mean the link is dead. */
  CLIENT_READ_TIMEOUT_MS: 120_000,
  /**
   * Server deadline from TCP accept (or TLS handshake) to the HTTP upgrade, and again from the upgrade to ClientInfo:
   * a connection silent (or slow-dripping) that long is destroyed, so it cannot hold a file descriptor. derper reaps
   * such connections after 30 s (http.Server ReadTimeout); an honest client needs one round trip for each step.
   */
  HANDSHAKE_TIMEOUT_MS: 10_000,
  /**
   * Open TCP connections the server accepts at once; beyond it a new connection is destroyed at accept (counted).
   * Each costs a file descriptor and tens of KiB of buffers; 10,000 leaves headroom under the usual fd limits (Node
   * raises the soft limit to the hard one). Raise it with `maxConnections` on a big server.
   */
  MAX_CONNECTIONS: 10_000,
  /** Per-destination queue depth, one queue for data and one for disco (drop oldest when full). */
  SEND_QUEUE_DEPTH: 32,
  /** Write timeout for ordinary clients; a client that cannot take data this long is disconnected. */
  WRITE_TIMEOUT_MS: 2_000,
  /** Write timeout for mesh peers, which carry a whole server's traffic. */
  MESH_WRITE_TIMEOUT_MS: 30_000,
  /** Per-node dial timeout when trying a region's nodes in order. */
  DIAL_NODE_TIMEOUT_MS: 1_500,
  /** Whole connect (TCP + upgrade + handshake) deadline. */
  CONNECT_TIMEOUT_MS: 10_000,
  /** Non-home region connections close after this long without writes. */
  INACTIVE_REGION_CLOSE_MS: 60_000,
  /** Mesh watch-loop retry interval. */
  MESH_RETRY_MS: 5_000,
  /** Magic IP used in status output for DERP paths ("3.3.40" sits above D, E, R, P on a keyboard). */
  MAGIC_IP: '127.3.3.40',
  /** Client cap on the ServerKey frame (Tailscale reads at most 1 KiB; extra bytes beyond key + magic are allowed). */
  MAX_SERVER_KEY_LEN: 1 << 10,
  /** Ping/Pong payload: 8 opaque bytes echoed back. */
  PING_LEN: 8,
  /** Largest payload of any frame a mesh peer sends after the handshake: ForwardPacket = src + dst + packet. */
  MAX_MESH_FRAME_LEN: 2 * 32 + (64 << 10),
  /** Largest payload of any frame an ordinary client sends after the handshake: SendPacket = dst + packet. */
  MAX_CLIENT_DATA_FRAME_LEN: 32 + (64 << 10),
  /**
   * Client-side cap on bytes queued in the socket: beyond it sendPacket drops (returns false) instead of letting
   * memory grow without bound behind a slow link; packets are datagrams, so dropping is their normal failure.
   */
  CLIENT_MAX_BUFFERED_BYTES: 4 << 20,
  /** Server receive-rate burst floor (Tailscale raises a configured burst to at least one full packet + key). */
  RATE_LIMIT_MIN_BURST: (64 << 10) + 32,
  /** PeerGone{NotHere} replies per client: refill rate per second and burst (Tailscale: 1/s, burst 3). */
  NOT_HERE_PER_SEC: 1,
  NOT_HERE_BURST: 3,
  /** Admission URL: answer deadline and largest body read (Tailscale's verify-client-url limits). */
  VERIFY_CLIENT_TIMEOUT_MS: 5_000,
  VERIFY_CLIENT_MAX_BODY: 4 << 10,
  /**
   * Server housekeeping tick: one timer per server (not per client) checks handshake deadlines, write timeouts and
   * keepalives, so 10,000 idle clients cost no timers; deadlines are honoured to within one tick.
   */
  SERVER_TICK_MS: 250,
  /**
   * Bytes the server lets pile up in one client's socket before it stops moving packets out of the bounded queues;
   * above it packets wait in (and drop from) the queues, so a slow reader costs at most this plus the queues.
   */
  SERVER_SOCKET_HIGH_WATER: 64 << 10,
  /**
   * Bytes of control frames (Pong, PeerGone, PeerPresent, KeepAlive) the server queues for one ordinary client
   * before dropping more: a client that sends Pings but never reads cannot grow server memory. Mesh peers, which get
   * a PeerPresent flood for every client when they start watching, are not capped.
   */
  SERVER_CONTROL_QUEUE_BYTES: 256 << 10,
  /** Largest WebSocket message the server accepts (frame boundaries need not align; one message may hold several). */
  WS_MAX_MESSAGE: 1 << 20,
  /** Largest HTTP header block read in the upgrade response by the client. */
  MAX_UPGRADE_HEADER: 16 << 10,
  /**
   * Health text a meshsock server sends just before closing a client the admission hook refused, so a meshsock
   * client can report DERP_DENIED rather than a bare EOF. Tailscale clients treat it as an ordinary health note.
   */
  DENIED_HEALTH_PREFIX: 'meshsock: client not admitted',
  /** Subprotocol name for DERP over WebSocket. */
  WS_SUBPROTOCOL: 'derp',
} as const;

/** Frame types (one byte). Unknown types are skipped by both sides. */
export const FrameType = {
  SERVER_KEY: 0x01,
  CLIENT_INFO: 0x02,
  SERVER_INFO: 0x03,
  SEND_PACKET: 0x04,
  RECV_PACKET: 0x05,
  KEEP_ALIVE: 0x06,
  NOTE_PREFERRED: 0x07,
  PEER_GONE: 0x08,
  PEER_PRESENT: 0x09,
  FORWARD_PACKET: 0x0a,
  WATCH_CONNS: 0x10,
  CLOSE_PEER: 0x11,
  PING: 0x12,
  PONG: 0x13,
  HEALTH: 0x14,
  RESTARTING: 0x15,
} as const;
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType];

/** PeerGone reason byte. 0xF0 (mesh connection broke) is local only and never sent. */
export const PeerGoneReason = {
  DISCONNECTED: 0x00,
  NOT_HERE: 0x01,
} as const;

/** PeerPresent flag bits. */
export const PeerPresentFlags = {
  REGULAR: 0x01,
  MESH_PEER: 0x02,
  PROBER: 0x04,
  NOT_IDEAL: 0x08,
} as const;
