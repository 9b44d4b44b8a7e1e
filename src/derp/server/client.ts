/**
 * One client connection on the DERP server, after the HTTP/WebSocket upgrade — wire-compatible with Tailscale DERP
 * v2 (tailscale-protocols.md §2.3, §2.4). It owns the byte stream and runs:
 *
 *   handshake   first frame must be ClientInfo (≤ 256 KiB) within the handshake timeout; the box must open;
 *               then admission (mesh-key holders always pass), then ServerInfo and registration with the relay.
 *   steady      SendPacket (≤ 32 + 64 KiB) · ForwardPacket / WatchConns / ClosePeer (mesh key only) · Ping (≤ 1000 B,
 *               answered with Pong) · NotePreferred (recorded) · Pong / KeepAlive (ignored) · unknown (skipped).
 *   sending     while nothing waits and the socket holds less than DERP.SERVER_SOCKET_HIGH_WATER bytes, frames go
 *               straight to an out-list written once at the end of the event-loop turn; otherwise they wait in three
 *               queues drained in order — control frames, disco packets (32), data packets (32; the oldest is
 *               dropped when full). Frames lying back to back in one buffer (a run of SendPackets rewritten in place
 *               in the sender's chunk) merge, so a chunk of relayed packets usually leaves in one write. When the
 *               socket stays back-pressured longer than the write timeout (2 s, 30 s for mesh peers) the client is
 *               dropped.
 *
 * Frames over the current cap, frames too short for their type and mesh-only frames from non-mesh clients close the
 * connection, each counted. Timers live in the relay's one housekeeping tick, not here, so an idle client costs no
 * timer; only a rate-limited client holds one, while it is paused.
 */
import { ENVELOPE } from '../../disco/envelope.js';
import { DecodeError } from '../../errors.js';
import type { AddrPort } from '../../internal/addr.js';
import { readU32 } from '../../internal/bytes.js';
import { randomFloat } from '../../internal/clock.js';
import { channels, publish } from '../../internal/diagnostics.js';
import type { SharedKey } from '../../key/box.js';
import type { PublicKey } from '../../key/keys.js';
import { DERP, FrameType, PeerGoneReason, PeerPresentFlags } from '../constants.js';
import { decodeFrame, encodeFrame, FrameReader } from '../frame.js';
import type { ByteStream } from '../stream.js';
import { TokenBucket } from '../token-bucket.js';
import { admit } from './admission.js';
import { openClientInfo, serverInfoFrame } from './handshake.js';
import type { KeyEntry, Relay } from './relay.js';
import { ControlQueue, SendQueue } from './send-queue.js';

const H = DERP.FRAME_HEADER_LEN;
const K = DERP.KEY_LEN;
const KEEPALIVE_FRAME = encodeFrame({ type: 'keepAlive' });

export type ServerClientState = 'handshake' | 'admitting' | 'active' | 'closed';

/** `isDisco(p.subarray(off, end))` without making the view: the disco magic 54 53 f0 9f 92 ac and a full header. */
export function isDiscoAt(p: Uint8Array, off: number, end: number): boolean {
  return (
    end - off >= ENVELOPE.HEADER_LEN &&
    p[off] === 0x54 &&
    p[off + 1] === 0x53 &&
    p[off + 2] === 0xf0 &&
    p[off + 3] === 0x9f &&
    p[off + 4] === 0x92 &&
    p[off + 5] === 0xac
  );
}

/** A connection's key as a hex string, from a Buffer view when possible (native and fast). */
export function keyHexAt(b: Uint8Array, off: number): string {
  return Buffer.isBuffer(b)
    ? b.toString('hex', off, off + K)
    : Buffer.from(b.buffer, b.byteOffset + off, K).toString('hex');
}

/** One connection's protocol driver; created by `Relay.accept`, owns its stream until it closes. */
export class ServerClient {
  state: ServerClientState = 'handshake';
  /** Set once the handshake succeeded. */
  key: PublicKey | undefined;
  hex = '';
  keyBytes: Uint8Array = new Uint8Array(0);
  isMesh = false;
  isProber = false;
  canAckPings = false;
  preferred = false;
  /** Sequence number of this connection (for last-one-wins among duplicates). */
  readonly connNum: number;
  /** True while other connections share this key. */
  dup = false;
  /** Queued for the relay's end-of-turn flush. */
  dirty = false;
  /** Registered with the relay (reachable by key). */
  registered = false;
  /** Last destination recorded in the relay's sent-to table, so it is recorded once per change. */
  lastNoted = '';
  readonly remote: AddrPort | undefined;

  private readonly reader = new FrameReader(DERP.MAX_CLIENT_INFO_LEN);
  private discoQ: SendQueue | undefined;
  private dataQ: SendQueue | undefined;
  private ctrlQ: ControlQueue | undefined;
  private bucket: TokenBucket | undefined;
  private shared: SharedKey | undefined;
  private notHere: TokenBucket | undefined;
  private throttled = false;
  private stalledSince: number | undefined;
  private deadline: number;
  private nextKeepAlive = Infinity;
  /** Last destination key seen (as eight big-endian words, and as hex), to skip re-hexing it packet after packet. */
  private readonly lastDst = new Uint32Array(8);
  private lastDstHex = '';
  /** The relay's entry for lastDstHex, cached by Relay.route while it stays valid. */
  lastEntry: KeyEntry | undefined;
  private dvBuf: Uint8Array | undefined;
  private dv: DataView | undefined;
  /** Frames taken from the queues this turn, as merged byte runs of ArrayBuffers, written at the end of the turn. */
  private readonly outAb: ArrayBufferLike[] = [];
  private readonly outStart: number[] = [];
  private readonly outEnd: number[] = [];
  private outBytes = 0;

  constructor(
    private readonly relay: Relay,
    readonly stream: ByteStream,
    greeting: Uint8Array,
    connNum: number,
  ) {
    this.connNum = connNum;
    this.remote = stream.remoteAddress;
    this.deadline = relay.clock.now() + relay.opts.handshakeTimeoutMs;
    stream.setHandlers({
      data: (chunk) => this.onData(chunk),
      drain: () => this.onDrain(),
      close: (err) => this.close(err ? 'error' : 'eof'),
    });
    stream.write(greeting);
  }

  /** Frames waiting in this client's queues. */
  get queued(): number {
    return (this.discoQ?.length ?? 0) + (this.dataQ?.length ?? 0) + (this.ctrlQ?.length ?? 0);
  }

  private get writeTimeoutMs(): number {
    return this.isMesh ? this.relay.opts.meshWriteTimeoutMs : this.relay.opts.writeTimeoutMs;
  }

  private onData(chunk: Uint8Array): void {
    if (this.state === 'closed') return;
    this.reader.push(chunk);
    if (this.state !== 'admitting' && !this.throttled) this.processFrames();
  }

  private processFrames(): void {
    const r = this.reader;
    try {
      for (;;) {
        if (this.state === 'closed' || this.state === 'admitting') break;
        if (!r.nextFrame()) {
          // Drained: keep no reference to the socket chunk (see FrameReader.release).
          r.release();
          this.dvBuf = undefined;
          this.dv = undefined;
          break;
        }
        const len = r.lastEnd - r.lastStart;
        if (this.state === 'handshake') this.onClientInfo(r.lastType, r.lastBuf.subarray(r.lastStart, r.lastEnd));
        else this.onFrame(r.lastType, r.lastBuf, r.lastStart, r.lastEnd, r.lastInChunk);
        // Charged per frame, header included, after the fact: a negative balance pauses reading until it refills.
        if (this.bucket && this.bucket.charge(H + len, this.relay.clock.now()) < 0) {
          this.throttle();
          break;
        }
      }
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      const oversize = err.where === 'derp/frame';
      if (oversize) this.relay.counters.oversizeFrames++;
      else this.relay.counters.malformedFrames++;
      this.close(oversize ? 'oversize frame' : 'malformed frame');
    }
  }

  /** Pauses reading until the receive token bucket is back to zero (Tailscale waits the same way). */
  private throttle(): void {
    this.throttled = true;
    this.relay.counters.rateLimitedPauses++;
    this.stream.pause();
    const wait = Math.max(1, this.bucket!.waitMs(this.relay.clock.now()));
    this.relay.clock.setTimer(() => {
      if (this.state === 'closed') return;
      this.throttled = false;
      this.stream.resume();
      this.processFrames();
    }, wait);
  }

  private onClientInfo(type: number, payload: Uint8Array): void {
    const relay = this.relay;
    if (type !== FrameType.CLIENT_INFO) {
      relay.counters.handshakeFailures++;
      this.close('first frame not ClientInfo');
      return;
    }
    const f = decodeFrame(type, payload);
    if (f.type !== 'clientInfo') return;
    const opened = openClientInfo(relay.privateKey, f, relay.opts.meshKey);
    if (!opened.ok) {
      relay.counters.handshakeFailures++;
      this.close(opened.reason);
      return;
    }
    this.key = opened.key;
    this.hex = opened.key.hex;
    this.keyBytes = opened.key.bytes;
    this.isMesh = opened.isMesh;
    this.isProber = opened.info.isProber;
    this.canAckPings = opened.info.canAckPings;
    this.shared = opened.shared;
    const verify = relay.opts.verifyClient;
    if (opened.isMesh || verify === undefined) {
      this.activate();
      return;
    }
    this.state = 'admitting';
    this.stream.pause();
    void admit(verify, { nodePublic: opened.key, source: this.remote ?? { ip: '0.0.0.0', port: 0 } }).then((res) => {
      if (this.state !== 'admitting') return;
      publish(channels.derpServer, () => ({ event: 'admission', key: this.hex, ...res }));
      if (res.reason === 'url-fail-open' || res.reason === 'url-fail-closed') relay.counters.admissionErrors++;
      if (!res.allow) {
        relay.counters.denied++;
        this.deny();
        return;
      }
      this.stream.resume();
      this.activate();
      this.processFrames();
    });
  }

  private deny(): void {
    this.state = 'closed';
    this.stream.write(encodeFrame({ type: 'health', problem: `${DERP.DENIED_HEALTH_PREFIX}: admission refused` }));
    this.stream.resume(); // a WebSocket close handshake needs the peer's close frame read
    this.stream.end();
    this.relay.onClosed(this, 'denied');
  }

  private activate(): void {
    const relay = this.relay;
    this.state = 'active';
    const limit = this.isMesh ? undefined : relay.opts.rateLimit;
    const now = relay.clock.now();
    if (limit) this.bucket = new TokenBucket(limit.bytesPerSec, Math.max(limit.burst, DERP.RATE_LIMIT_MIN_BURST), now);
    this.reader.maxFrameLength = this.isMesh ? DERP.MAX_MESH_FRAME_LEN : DERP.MAX_CLIENT_DATA_FRAME_LEN;
    this.stream.write(serverInfoFrame(this.shared!, limit, relay.rng));
    this.shared = undefined; // not needed after the login
    this.scheduleKeepAlive(now);
    relay.register(this);
  }

  private scheduleKeepAlive(now: number): void {
    this.nextKeepAlive = now + DERP.KEEPALIVE_MS + randomFloat(this.relay.rng) * DERP.KEEPALIVE_JITTER_MS;
  }

  /**
   * One frame after the handshake: its payload is bytes [start, end) of `buf`, the header just before. `inChunk`:
   * `buf` is a socket chunk nobody else uses, so a SendPacket can be turned into the RecvPacket in place (see
   * Relay.route). The packet path makes no view objects; other frames are rare and take a view.
   */
  private onFrame(type: number, buf: Uint8Array, start: number, end: number, inChunk: boolean): void {
    const relay = this.relay;
    if (type === FrameType.SEND_PACKET) {
      if (end - start < K) throw new DecodeError('derp/sendPacket', 'shorter than a key', 0);
      if (end - start - K > DERP.MAX_PACKET_SIZE) throw new DecodeError('derp/frame', 'packet over 64 KiB', 0);
      // Same destination as the last packet? Compared as eight 32-bit words through a DataView on this chunk.
      if (this.dvBuf !== buf) {
        this.dvBuf = buf;
        this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
      }
      const dv = this.dv!;
      const w = this.lastDst;
      if (
        !this.lastDstHex ||
        dv.getUint32(start) !== w[0] ||
        dv.getUint32(start + 4) !== w[1] ||
        dv.getUint32(start + 8) !== w[2] ||
        dv.getUint32(start + 12) !== w[3] ||
        dv.getUint32(start + 16) !== w[4] ||
        dv.getUint32(start + 20) !== w[5] ||
        dv.getUint32(start + 24) !== w[6] ||
        dv.getUint32(start + 28) !== w[7]
      ) {
        for (let i = 0; i < 8; i++) w[i] = dv.getUint32(start + 4 * i);
        this.lastDstHex = keyHexAt(buf, start);
        this.lastEntry = undefined;
      }
      if (!inChunk || isDiscoAt(buf, start + K, end)) {
        relay.route(this, this.lastDstHex, buf, start, end, inChunk);
        return;
      }
      // Fast path: the SendPackets that follow in this chunk for the same key (not disco) form one run, routed and
      // queued as a whole. Anything unusual — another type or key, a disco packet, a bad or partial frame — ends
      // the run and is left to the reader.
      let h = end;
      let count = 1;
      while (buf.length - h >= H && buf[h] === FrameType.SEND_PACKET) {
        const len = dv.getUint32(h + 1);
        const p = h + H;
        if (
          len < K ||
          len - K > DERP.MAX_PACKET_SIZE ||
          buf.length - p < len ||
          dv.getUint32(p) !== w[0] ||
          dv.getUint32(p + 4) !== w[1] ||
          dv.getUint32(p + 8) !== w[2] ||
          dv.getUint32(p + 12) !== w[3] ||
          dv.getUint32(p + 16) !== w[4] ||
          dv.getUint32(p + 20) !== w[5] ||
          dv.getUint32(p + 24) !== w[6] ||
          dv.getUint32(p + 28) !== w[7] ||
          isDiscoAt(buf, p + K, p + len)
        )
          break;
        h = p + len;
        count++;
      }
      if (count > 1) {
        this.reader.skipTo(h);
        // Rate limit: processFrames charges the first frame; the rest of the run is charged here.
        this.bucket?.charge(h - end, this.relay.clock.now());
      }
      relay.routeRun(this, this.lastDstHex, buf, start, end, h, count);
      return;
    }
    const p = buf.subarray(start, end);
    switch (type) {
      case FrameType.FORWARD_PACKET: {
        if (!this.isMesh) return this.refuse('ForwardPacket');
        if (p.length < 2 * K) throw new DecodeError('derp/forwardPacket', 'shorter than two keys', 0);
        if (p.length - 2 * K > DERP.MAX_PACKET_SIZE) throw new DecodeError('derp/frame', 'packet over 64 KiB', 0);
        relay.routeForwarded(this, p);
        return;
      }
      case FrameType.NOTE_PREFERRED:
        if (p.length < 1) throw new DecodeError('derp/notePreferred', 'empty', 0);
        this.preferred = p[0] !== 0;
        return;
      case FrameType.PING: {
        if (p.length < DERP.PING_LEN) throw new DecodeError('derp/ping', 'shorter than 8 bytes', 0);
        if (p.length > DERP.MAX_PING_LEN) throw new DecodeError('derp/frame', 'ping over 1000 bytes', 0);
        relay.counters.pingsAnswered++;
        this.sendControl(encodeFrame({ type: 'pong', data: p.subarray(0, DERP.PING_LEN) }));
        return;
      }
      case FrameType.WATCH_CONNS:
        if (!this.isMesh) return this.refuse('WatchConns');
        relay.addWatcher(this);
        return;
      case FrameType.CLOSE_PEER:
        if (!this.isMesh) return this.refuse('ClosePeer');
        if (p.length < K) throw new DecodeError('derp/closePeer', 'shorter than a key', 0);
        relay.counters.closePeerRequests++;
        relay.closePeer(keyHexAt(p, 0));
        return;
      case FrameType.PONG:
      case FrameType.KEEP_ALIVE:
        return;
      default:
        relay.counters.unknownFrames++;
        return;
    }
  }

  private refuse(what: string): void {
    this.relay.counters.permissionDenied++;
    this.close(`${what} without the mesh key`);
  }

  /** True while the socket and this turn's out-list hold fewer bytes than the high-water mark. */
  get flowing(): boolean {
    return this.stream.bufferedAmount + this.outBytes < DERP.SERVER_SOCKET_HIGH_WATER;
  }

  /**
   * Hands over `count` RecvPacket frames lying back to back at bytes [start, end) of `buf`. While nothing is queued
   * and the socket has room they go straight to this turn's out-list; otherwise each joins its bounded queue (disco
   * or data), the oldest frame there being dropped when it is full.
   */
  enqueue(buf: Uint8Array, start: number, end: number, count: number, disco: boolean): void {
    const c = this.relay.counters;
    if (this.state !== 'active') {
      c.dropClientGone += count;
      return;
    }
    if (this.queued === 0 && this.flowing) {
      this.appendOut(buf, start, end);
      c.packetsSent += count;
      c.bytesSent += end - start - count * (H + K);
      this.relay.markDirty(this);
      return;
    }
    const depth = this.relay.opts.queueDepth;
    const q = disco ? (this.discoQ ??= new SendQueue(depth)) : (this.dataQ ??= new SendQueue(depth));
    for (let f = start; f < end;) {
      const n = H + readU32(buf, f + 1);
      if (q.length === q.capacity && this.flowing) {
        // A burst filled the queue within one turn while the socket still has room: hand it over rather than drop.
        this.drainQueues();
      }
      if (q.push(buf, f, f + n)) {
        if (disco) c.dropQueueFullDisco++;
        else c.dropQueueFull++;
      }
      f += n;
    }
    this.relay.markDirty(this);
  }

  /** Appends bytes [start, end) of `buf` to the out-list, extending the last run when they follow it. */
  private appendOut(buf: Uint8Array, start: number, end: number): void {
    const ab = buf.buffer;
    const s = buf.byteOffset + start;
    const e = buf.byteOffset + end;
    this.outBytes += end - start;
    const n = this.outAb.length;
    if (n > 0 && this.outAb[n - 1] === ab && this.outEnd[n - 1] === s) this.outEnd[n - 1] = e;
    else {
      this.outAb.push(ab);
      this.outStart.push(s);
      this.outEnd.push(e);
    }
  }

  /** Queues a control frame (never dropped by the packet queues; capped by bytes for non-mesh clients). */
  sendControl(frame: Uint8Array): void {
    if (this.state === 'closed') return;
    const q = (this.ctrlQ ??= new ControlQueue());
    if (!this.isMesh && q.bytes + this.stream.bufferedAmount > DERP.SERVER_CONTROL_QUEUE_BYTES) {
      this.relay.counters.controlDropped++;
      return;
    }
    q.push(frame);
    this.relay.markDirty(this);
  }

  /** Sends PeerGone{NotHere} for a disco packet to an unknown key, at most 1/s with a burst of 3. */
  sendNotHere(dst: Uint8Array): void {
    const now = this.relay.clock.now();
    this.notHere ??= new TokenBucket(DERP.NOT_HERE_PER_SEC, DERP.NOT_HERE_BURST, now);
    if (!this.notHere.allow(1, now)) {
      this.relay.counters.notHereRateLimited++;
      return;
    }
    this.relay.counters.notHereSent++;
    this.sendControl(encodeFrame({ type: 'peerGone', key: dst, reason: PeerGoneReason.NOT_HERE }));
  }

  /** PeerPresent flags describing this client to watchers. */
  presenceFlags(): number {
    let f = 0;
    if (this.isMesh) f |= PeerPresentFlags.MESH_PEER;
    if (this.isProber) f |= PeerPresentFlags.PROBER;
    if (f === 0) f = PeerPresentFlags.REGULAR;
    return f;
  }

  /** Moves queued frames into the socket while it has room. Called by the relay at the end of a turn. */
  flush(): void {
    this.dirty = false;
    this.drainQueues();
    this.writeOut();
  }

  /**
   * Takes frames from the queues (control, then disco, then data) for the socket, up to the high-water mark, into
   * the out-list written at the end of the turn. Frames that sit back to back in one buffer — a run of SendPackets
   * rewritten in place in the sender's chunk — merge into one run, so a chunk of relayed packets usually leaves in
   * one socket write, not one per packet.
   */
  private drainQueues(): void {
    if (this.state !== 'active') return;
    const c = this.relay.counters;
    while (this.flowing) {
      const ctrl = this.ctrlQ?.shift();
      if (ctrl !== undefined) {
        this.appendOut(ctrl, 0, ctrl.length);
        continue;
      }
      const q = this.discoQ !== undefined && this.discoQ.length > 0 ? this.discoQ : this.dataQ;
      if (q === undefined || !q.shift()) break;
      this.appendOut(q.outBuf!, q.outStart, q.outEnd);
      q.outBuf = undefined;
      c.packetsSent += q.outCount;
      c.bytesSent += q.outEnd - q.outStart - q.outCount * (H + K);
    }
  }

  /** Writes the out-list: one write for a single run, else one corked batch. */
  private writeOut(): void {
    const n = this.outAb.length;
    if (n === 0 || this.state !== 'active') return;
    const s = this.stream;
    if (n > 1) s.cork();
    for (let i = 0; i < n; i++)
      s.write(Buffer.from(this.outAb[i]!, this.outStart[i]!, this.outEnd[i]! - this.outStart[i]!));
    if (n > 1) s.uncork();
    this.outAb.length = 0;
    this.outStart.length = 0;
    this.outEnd.length = 0;
    this.outBytes = 0;
    if (s.needDrain || s.bufferedAmount >= DERP.SERVER_SOCKET_HIGH_WATER) this.stalledSince ??= this.relay.clock.now();
  }

  private onDrain(): void {
    this.stalledSince = undefined;
    if (this.queued > 0) this.flush();
  }

  /** Housekeeping from the relay's tick: handshake deadline, write timeout, keepalive. */
  tick(now: number): void {
    if (this.state === 'handshake' || this.state === 'admitting') {
      if (now >= this.deadline) {
        this.relay.counters.handshakeTimeouts++;
        this.close('handshake timeout');
      }
      return;
    }
    if (this.state !== 'active') return;
    if (this.stalledSince !== undefined && now - this.stalledSince >= this.writeTimeoutMs) {
      this.relay.counters.writeTimeouts++;
      this.close('write timeout');
      return;
    }
    if (now >= this.nextKeepAlive) {
      this.relay.counters.keepAlivesSent++;
      this.sendControl(KEEPALIVE_FRAME);
      this.scheduleKeepAlive(now);
    }
  }

  /** Closes the connection (idempotent) and tells the relay. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const dropped = (this.discoQ?.length ?? 0) + (this.dataQ?.length ?? 0);
    if (dropped > 0) this.relay.counters.dropClientGone += dropped;
    this.discoQ?.clear();
    this.dataQ?.clear();
    this.ctrlQ?.clear();
    this.stream.destroy();
    this.relay.onClosed(this, reason);
  }

  /** Graceful close for server shutdown: flush what the socket takes, then end. */
  end(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.stream.end();
    this.relay.onClosed(this, 'server shutdown');
  }
}
