/**
 * DERP frame codec — wire-compatible with Tailscale DERP v2.
 *
 *   frame  = type[1] length[4, BE] payload[length]
 *
 *   0x01 ServerKey      S→C  magic "DERP🔑"[8] serverKey[32] (+ ignored future bytes)
 *   0x02 ClientInfo     C→S  clientKey[32] nonce[24] box(JSON)            (box = tag[16] || ciphertext)
 *   0x03 ServerInfo     S→C  nonce[24] box(JSON)
 *   0x04 SendPacket     C→S  dstKey[32] packet
 *   0x05 RecvPacket     S→C  srcKey[32] packet
 *   0x06 KeepAlive      S→C  (empty)
 *   0x07 NotePreferred  C→S  preferred[1] (1 = this server is my home)
 *   0x08 PeerGone       S→C  key[32] reason[1] (reason absent from old servers = Disconnected)
 *   0x09 PeerPresent    S→C  key[32] ip[16] port[2] flags[1]  (shorter forms from old servers: key only, key+addr)
 *   0x0a ForwardPacket  mesh srcKey[32] dstKey[32] packet
 *   0x10 WatchConns     C→S  (empty; needs the mesh key)
 *   0x11 ClosePeer      C→S  key[32] (needs the mesh key)
 *   0x12 Ping           both data[8]
 *   0x13 Pong           both data[8] (echo of the Ping)
 *   0x14 Health         S→C  UTF-8 problem text; empty clears
 *   0x15 Restarting     S→C  reconnectInMs[4] tryForMs[4]
 *
 * Decoding is lenient where Tailscale's is (trailing bytes ignored, unknown types kept as `unknown`) and strict
 * where it must be (short payloads and oversize frames raise DecodeError). Decoded byte fields are views into the
 * input buffer: copy them if you keep them past the next read.
 */
import { DecodeError } from '../errors.js';
import { ADDR_PORT_LEN, decodeAddrPort, encodeAddrPortInto, type AddrPort } from '../internal/addr.js';
import { bytesEqual, readU32, writeU32 } from '../internal/bytes.js';
import { DERP, DERP_MAGIC, FrameType } from './constants.js';

const K = DERP.KEY_LEN;
const UTF8_ENCODER = new TextEncoder();
/** Non-fatal: invalid UTF-8 becomes U+FFFD rather than an error, as Go's string conversion would keep it. */
const UTF8_DECODER = new TextDecoder('utf-8', { fatal: false });
const H = DERP.FRAME_HEADER_LEN;

export type Frame =
  | { type: 'serverKey'; key: Uint8Array }
  | { type: 'clientInfo'; key: Uint8Array; sealed: Uint8Array }
  | { type: 'serverInfo'; sealed: Uint8Array }
  | { type: 'sendPacket'; dst: Uint8Array; packet: Uint8Array }
  | { type: 'recvPacket'; src: Uint8Array; packet: Uint8Array }
  | { type: 'keepAlive' }
  | { type: 'notePreferred'; preferred: boolean }
  | { type: 'peerGone'; key: Uint8Array; reason: number }
  | { type: 'peerPresent'; key: Uint8Array; endpoint: AddrPort | undefined; flags: number }
  | { type: 'forwardPacket'; src: Uint8Array; dst: Uint8Array; packet: Uint8Array }
  | { type: 'watchConns' }
  | { type: 'closePeer'; key: Uint8Array }
  | { type: 'ping'; data: Uint8Array }
  | { type: 'pong'; data: Uint8Array }
  | { type: 'health'; problem: string }
  | { type: 'restarting'; reconnectInMs: number; tryForMs: number }
  | { type: 'unknown'; frameType: number; payload: Uint8Array };

/** Payload length of a frame when encoded (header excluded). */
export function framePayloadLength(f: Frame): number {
  switch (f.type) {
    case 'serverKey':
      return DERP_MAGIC.length + K;
    case 'clientInfo':
      return K + f.sealed.length;
    case 'serverInfo':
      return f.sealed.length;
    case 'sendPacket':
    case 'recvPacket':
      return K + f.packet.length;
    case 'keepAlive':
    case 'watchConns':
      return 0;
    case 'notePreferred':
      return 1;
    case 'peerGone':
      return K + 1;
    case 'peerPresent':
      return K + ADDR_PORT_LEN + 1;
    case 'forwardPacket':
      return 2 * K + f.packet.length;
    case 'closePeer':
      return K;
    case 'ping':
    case 'pong':
      return 8;
    case 'health':
      return UTF8_ENCODER.encode(f.problem).length;
    case 'restarting':
      return 8;
    case 'unknown':
      return f.payload.length;
  }
}

const TYPE_BYTE: Record<Frame['type'], number> = {
  serverKey: FrameType.SERVER_KEY,
  clientInfo: FrameType.CLIENT_INFO,
  serverInfo: FrameType.SERVER_INFO,
  sendPacket: FrameType.SEND_PACKET,
  recvPacket: FrameType.RECV_PACKET,
  keepAlive: FrameType.KEEP_ALIVE,
  notePreferred: FrameType.NOTE_PREFERRED,
  peerGone: FrameType.PEER_GONE,
  peerPresent: FrameType.PEER_PRESENT,
  forwardPacket: FrameType.FORWARD_PACKET,
  watchConns: FrameType.WATCH_CONNS,
  closePeer: FrameType.CLOSE_PEER,
  ping: FrameType.PING,
  pong: FrameType.PONG,
  health: FrameType.HEALTH,
  restarting: FrameType.RESTARTING,
  unknown: -1,
};

function key32(k: Uint8Array, name: string): Uint8Array {
  if (k.length !== K) throw new RangeError(`"${name}" expected ${K} bytes, got ${k.length}`);
  return k;
}

function uint(v: number, bits: 8 | 32, name: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 2 ** bits - 1)
    throw new RangeError(`"${name}" expected an integer in [0, ${2 ** bits - 1}], got ${v}`);
  return v;
}

/** Writes the 5-byte header at `off`. */
export function encodeFrameHeaderInto(type: number, length: number, out: Uint8Array, off = 0): number {
  out[off] = type;
  writeU32(out, off + 1, length);
  return off + H;
}

/** Encodes one frame (header + payload) into a fresh buffer. Throws RangeError for wrong-sized fields. */
export function encodeFrame(f: Frame): Uint8Array {
  const len = framePayloadLength(f);
  const out = new Uint8Array(H + len);
  encodeFrameHeaderInto(f.type === 'unknown' ? uint(f.frameType, 8, 'frameType') : TYPE_BYTE[f.type], len, out, 0);
  let o: number = H;
  switch (f.type) {
    case 'serverKey':
      out.set(DERP_MAGIC, o);
      out.set(key32(f.key, 'key'), o + DERP_MAGIC.length);
      break;
    case 'clientInfo':
      out.set(key32(f.key, 'key'), o);
      out.set(f.sealed, o + K);
      break;
    case 'serverInfo':
      out.set(f.sealed, o);
      break;
    case 'sendPacket':
      out.set(key32(f.dst, 'dst'), o);
      out.set(f.packet, o + K);
      break;
    case 'recvPacket':
      out.set(key32(f.src, 'src'), o);
      out.set(f.packet, o + K);
      break;
    case 'keepAlive':
    case 'watchConns':
      break;
    case 'notePreferred':
      out[o] = f.preferred ? 1 : 0;
      break;
    case 'peerGone':
      out.set(key32(f.key, 'key'), o);
      out[o + K] = uint(f.reason, 8, 'reason');
      break;
    case 'peerPresent':
      out.set(key32(f.key, 'key'), o);
      o = encodeAddrPortInto(f.endpoint ?? { ip: '::', port: 0 }, out, o + K);
      out[o] = uint(f.flags, 8, 'flags');
      break;
    case 'forwardPacket':
      out.set(key32(f.src, 'src'), o);
      out.set(key32(f.dst, 'dst'), o + K);
      out.set(f.packet, o + 2 * K);
      break;
    case 'closePeer':
      out.set(key32(f.key, 'key'), o);
      break;
    case 'ping':
    case 'pong':
      if (f.data.length !== 8) throw new RangeError(`"data" expected 8 bytes, got ${f.data.length}`);
      out.set(f.data, o);
      break;
    case 'health':
      out.set(UTF8_ENCODER.encode(f.problem), o);
      break;
    case 'restarting':
      writeU32(out, o, uint(f.reconnectInMs, 32, 'reconnectInMs'));
      writeU32(out, o + 4, uint(f.tryForMs, 32, 'tryForMs'));
      break;
    case 'unknown':
      out.set(f.payload, o);
      break;
  }
  return out;
}

function need(p: Uint8Array, n: number, where: string): void {
  if (p.length < n) throw new DecodeError(`derp/${where}`, `payload ${p.length} bytes, need ${n}`, p.length);
}

/**
 * Decodes a frame payload of the given type. Byte fields are views into `p`. Throws DecodeError for a payload too
 * short to be safe; trailing bytes are ignored.
 */
export function decodeFrame(type: number, p: Uint8Array): Frame {
  switch (type) {
    case FrameType.SERVER_KEY:
      need(p, DERP_MAGIC.length + K, 'serverKey');
      if (!bytesEqual(p.subarray(0, DERP_MAGIC.length), DERP_MAGIC))
        throw new DecodeError('derp/serverKey', 'bad magic', 0);
      return { type: 'serverKey', key: p.subarray(8, 8 + K) };
    case FrameType.CLIENT_INFO:
      need(p, K + DERP.NONCE_LEN + 16, 'clientInfo');
      return { type: 'clientInfo', key: p.subarray(0, K), sealed: p.subarray(K) };
    case FrameType.SERVER_INFO:
      need(p, DERP.NONCE_LEN + 16, 'serverInfo');
      return { type: 'serverInfo', sealed: p };
    case FrameType.SEND_PACKET:
      need(p, K, 'sendPacket');
      return { type: 'sendPacket', dst: p.subarray(0, K), packet: p.subarray(K) };
    case FrameType.RECV_PACKET:
      need(p, K, 'recvPacket');
      return { type: 'recvPacket', src: p.subarray(0, K), packet: p.subarray(K) };
    case FrameType.KEEP_ALIVE:
      return { type: 'keepAlive' };
    case FrameType.NOTE_PREFERRED:
      need(p, 1, 'notePreferred');
      return { type: 'notePreferred', preferred: p[0] !== 0 };
    case FrameType.PEER_GONE:
      need(p, K, 'peerGone');
      return { type: 'peerGone', key: p.subarray(0, K), reason: p.length > K ? p[K]! : 0 };
    case FrameType.PEER_PRESENT: {
      need(p, K, 'peerPresent');
      const endpoint = p.length >= K + ADDR_PORT_LEN ? decodeAddrPort(p, K, 'derp/peerPresent') : undefined;
      const flags = p.length >= K + ADDR_PORT_LEN + 1 ? p[K + ADDR_PORT_LEN]! : 0;
      return { type: 'peerPresent', key: p.subarray(0, K), endpoint, flags };
    }
    case FrameType.FORWARD_PACKET:
      need(p, 2 * K, 'forwardPacket');
      return { type: 'forwardPacket', src: p.subarray(0, K), dst: p.subarray(K, 2 * K), packet: p.subarray(2 * K) };
    case FrameType.WATCH_CONNS:
      return { type: 'watchConns' };
    case FrameType.CLOSE_PEER:
      need(p, K, 'closePeer');
      return { type: 'closePeer', key: p.subarray(0, K) };
    case FrameType.PING:
      need(p, 8, 'ping');
      return { type: 'ping', data: p.subarray(0, 8) };
    case FrameType.PONG:
      need(p, 8, 'pong');
      return { type: 'pong', data: p.subarray(0, 8) };
    case FrameType.HEALTH:
      return { type: 'health', problem: UTF8_DECODER.decode(p) };
    case FrameType.RESTARTING:
      need(p, 8, 'restarting');
      return { type: 'restarting', reconnectInMs: readU32(p, 0), tryForMs: readU32(p, 4) };
    default:
      return { type: 'unknown', frameType: type, payload: p };
  }
}

/** True when `b` starts with a complete 5-byte header (never throws). */
export function isFrameHeader(b: Uint8Array): boolean {
  return b instanceof Uint8Array && b.length >= H;
}

const EMPTY = new Uint8Array(0);
/** A pending buffer larger than this is released once empty, so idle connections stay small. */
const PEND_KEEP = 16 << 10;

/**
 * Incremental frame reader for a byte stream (TCP or WebSocket): `push(chunk)` then `next()` until undefined.
 *
 * Frames that lie whole inside a pushed chunk are returned as views into that chunk without copying; only a frame
 * split across chunks is copied into a small pending buffer, which grows with the bytes that actually arrived (never
 * to the length a header merely declares) and is released when empty, so an idle or hostile peer holds at most one
 * partial frame. A header declaring more than `maxFrameLength` raises DecodeError as soon as its 5 bytes are in,
 * before its payload is buffered. Returned payloads are valid until the next `push`. Drain with `next()` before
 * pushing again; pushing without draining is allowed and keeps every byte, at the cost of a copy.
 *
 * Three ways to read: `next()` decodes; `nextRaw()` / `nextPayload()` give the raw payload view; `nextFrame()`
 * describes the frame in fields without allocating (the server's per-packet path), with `skipTo()` to take a run of
 * frames the caller parsed ahead, and `release()` to stop pinning the chunk once drained.
 */
export class FrameReader {
  /** Pending bytes of a frame split across chunks: pend[pStart, pEnd). Written only at or after pEnd. */
  private pend: Uint8Array = EMPTY;
  private pStart = 0;
  private pEnd = 0;
  /** The chunk being read in place: cur[pos, cur.length). */
  private cur: Uint8Array = EMPTY;
  private pos = 0;

  /** Largest payload length accepted; may be changed between frames (e.g. after a handshake). */
  maxFrameLength: number;

  constructor(maxFrameLength: number) {
    this.maxFrameLength = maxFrameLength;
  }

  /** Bytes buffered but not yet returned as frames. */
  get buffered(): number {
    return this.pEnd - this.pStart + (this.cur.length - this.pos);
  }

  push(chunk: Uint8Array): void {
    if (this.pEnd === this.pStart) {
      // Earlier views into `pend` are dead now (contract), so its space can be reused from the start.
      this.pStart = 0;
      this.pEnd = 0;
    }
    if (this.pos < this.cur.length) this.appendPending(this.cur.subarray(this.pos));
    this.cur = chunk;
    this.pos = 0;
  }

  /** Appends at pEnd, reallocating (never compacting in place, so views handed out stay intact). */
  private appendPending(b: Uint8Array): void {
    const have = this.pEnd - this.pStart;
    if (this.pend.length - this.pEnd < b.length) {
      const next = new Uint8Array(Math.max(have + b.length, Math.min(2 * (have + b.length), H + this.maxFrameLength)));
      next.set(this.pend.subarray(this.pStart, this.pEnd));
      this.pend = next;
      this.pStart = 0;
      this.pEnd = have;
    }
    this.pend.set(b, this.pEnd);
    this.pEnd += b.length;
  }

  private checkLength(type: number, len: number): void {
    if (len > this.maxFrameLength)
      throw new DecodeError(
        'derp/frame',
        `frame type 0x${type.toString(16)} length ${len} exceeds ${this.maxFrameLength}`,
        1,
      );
  }

  /** Type byte of the frame last found by `nextFrame` (or returned by `nextPayload`). */
  lastType = 0;
  /** The buffer holding that frame's payload at [lastStart, lastEnd), its 5-byte header just before it. */
  lastBuf: Uint8Array = EMPTY;
  lastStart = 0;
  lastEnd = 0;
  /**
   * True when that frame lies in the chunk the caller pushed (so its bytes, header included, stay put for as long
   * as the caller keeps that chunk); false when it lies in the reader's pending buffer, which the next `push` may
   * overwrite.
   */
  lastInChunk = false;

  /**
   * Finds the next complete frame and describes it in `lastType`, `lastBuf`, `lastStart`, `lastEnd`,
   * `lastInChunk`; returns false when more bytes are needed. Allocation-free (the server's per-packet path).
   * Throws DecodeError for a header over `maxFrameLength`.
   */
  nextFrame(): boolean {
    let have = this.pEnd - this.pStart;
    if (have > 0) {
      // Complete the split frame from the current chunk: first its header, then its payload.
      if (have < H) {
        const take = Math.min(H - have, this.cur.length - this.pos);
        this.appendPending(this.cur.subarray(this.pos, this.pos + take));
        this.pos += take;
        have += take;
        if (have < H) return false;
      }
      const type = this.pend[this.pStart]!;
      const len = readU32(this.pend, this.pStart + 1);
      this.checkLength(type, len);
      if (have < H + len) {
        const take = Math.min(H + len - have, this.cur.length - this.pos);
        if (take > 0) this.appendPending(this.cur.subarray(this.pos, this.pos + take));
        this.pos += take;
        if (have + take < H + len) return false;
      }
      this.lastType = type;
      this.lastInChunk = false;
      this.lastBuf = this.pend;
      this.lastStart = this.pStart + H;
      this.lastEnd = this.pStart + H + len;
      this.pStart += H + len;
      if (this.pStart === this.pEnd && this.pend.length > PEND_KEEP) {
        // Let a large buffer go once its frame is out; lastBuf keeps it alive only as long as needed.
        this.pend = EMPTY;
        this.pStart = 0;
        this.pEnd = 0;
      }
      return true;
    }
    const cur = this.cur;
    const pos = this.pos;
    const avail = cur.length - pos;
    if (avail < H) return false;
    const type = cur[pos]!;
    const len = readU32(cur, pos + 1);
    this.checkLength(type, len);
    if (avail < H + len) return false;
    this.lastType = type;
    this.lastInChunk = true;
    this.lastBuf = cur;
    this.lastStart = pos + H;
    this.lastEnd = pos + H + len;
    this.pos = pos + H + len;
    if (this.pos === cur.length) {
      this.cur = EMPTY;
      this.pos = 0;
    }
    return true;
  }

  /**
   * Moves the read position within the current chunk to `offset`, a frame boundary the caller found by reading
   * ahead of the frame `nextFrame` last returned (only when `lastInChunk`). Used by the server to take a run of
   * frames in one step.
   */
  skipTo(offset: number): void {
    if (this.cur !== this.lastBuf || offset < this.pos || offset > this.cur.length)
      throw new RangeError('skipTo: offset is not ahead in the current chunk');
    this.pos = offset;
    if (this.pos === this.cur.length) {
      this.cur = EMPTY;
      this.pos = 0;
    }
  }

  /**
   * Drops the reader's references to the last pushed chunk, copying any partial frame still in it into the pending
   * buffer. Call after draining (`nextFrame` returned false): a long-lived reader then pins no socket chunk between
   * reads. Like `push`, it ends the validity of payloads returned so far.
   */
  release(): void {
    if (this.pos < this.cur.length) {
      if (this.pEnd === this.pStart) {
        this.pStart = 0;
        this.pEnd = 0;
      }
      this.appendPending(this.cur.subarray(this.pos));
    }
    this.cur = EMPTY;
    this.pos = 0;
    this.lastBuf = EMPTY;
  }

  /** The next complete frame's payload (a view; its type in `lastType`), or undefined when more bytes are needed. */
  nextPayload(): Uint8Array | undefined {
    return this.nextFrame() ? this.lastBuf.subarray(this.lastStart, this.lastEnd) : undefined;
  }

  /** The next complete frame as { type, payload }, or undefined when more bytes are needed. */
  nextRaw(): { type: number; payload: Uint8Array } | undefined {
    const payload = this.nextPayload();
    return payload && { type: this.lastType, payload };
  }

  /** The next complete decoded frame, or undefined. Throws DecodeError for oversize or malformed frames. */
  next(): Frame | undefined {
    const raw = this.nextRaw();
    return raw && decodeFrame(raw.type, raw.payload);
  }
}
