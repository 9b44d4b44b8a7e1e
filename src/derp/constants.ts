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
  /** Server deadline for the upgrade + ClientInfo step. */
  HANDSHAKE_TIMEOUT_MS: 10_000,
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
