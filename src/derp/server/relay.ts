/**
 * The DERP server's routing core (tailscale-protocols.md §2.4, §2.5): who is connected under which key, where a
 * packet for a key goes (a local client, or a mesh forwarder for a client of another node in the region), who must
 * hear PeerGone when a client leaves, and who watches arrivals and departures. It owns no socket; the HTTP layer
 * hands it upgraded streams (`accept`), and each `ServerClient` calls back into it.
 *
 * - Duplicate connections for one key: the newest is active, and a duplicate that sends becomes active again
 *   (Tailscale's default "last writer is active"); when the active one leaves, the most recent remaining takes over.
 * - When a key leaves the region (its last local connection closes and no forwarder knows it, or its forwarder is
 *   removed and it is not local), every local client it sent packets to gets PeerGone{Disconnected}.
 * - Packets for unknown keys are dropped and counted; for disco packets the sender gets PeerGone{NotHere}.
 * - Packets from local clients for keys on another node go out as ForwardPacket on that node's mesh link; packets
 *   that arrive as ForwardPacket are delivered locally only (one hop).
 *
 * One housekeeping timer for the whole server ticks every DERP.SERVER_TICK_MS while any connection exists. Packets
 * queued during one event-loop turn are flushed at its end (one corked write per destination).
 */
import { isDisco } from '../../disco/envelope.js';
import { DriverTimer, type Clock, type RandomSource } from '../../internal/clock.js';
import { readU32, writeU32 } from '../../internal/bytes.js';
import { channels, publish } from '../../internal/diagnostics.js';
import type { PrivateKey, PublicKey } from '../../key/keys.js';
import { DERP, FrameType, PeerGoneReason } from '../constants.js';
import { encodeFrame } from '../frame.js';
import type { ByteStream } from '../stream.js';
import type { VerifyClient } from './admission.js';
import { isDiscoAt, keyHexAt, ServerClient } from './client.js';

const H = DERP.FRAME_HEADER_LEN;
const K = DERP.KEY_LEN;

/** Settings the relay and its clients share. */
export interface RelayOptions {
  /** Lower-case hex mesh key, if this server is part of a mesh. */
  meshKey: string | undefined;
  verifyClient: VerifyClient | undefined;
  /** Per-client receive limit; burst is raised to at least DERP.RATE_LIMIT_MIN_BURST. */
  rateLimit: { bytesPerSec: number; burst: number } | undefined;
  queueDepth: number;
  /** Upgrade → ClientInfo deadline (and, in the HTTP layer, accept → upgrade). */
  handshakeTimeoutMs: number;
  writeTimeoutMs: number;
  meshWriteTimeoutMs: number;
}

/** Something that can carry a packet to a client on another node of the region (a mesh link). */
export interface Forwarder {
  readonly name: string;
  forwardPacket(src: PublicKey, dst: PublicKey, packet: Uint8Array): boolean;
}

/** Monotonic counters of the server. Plain fields, because some are bumped per packet. */
export class ServerCounters {
  /** Connections upgraded (HTTP or WebSocket). */
  accepts = 0;
  /** Requests that were not valid HTTP (garbage before the upgrade); each connection is destroyed. */
  httpBadRequests = 0;
  /** TCP connections destroyed at accept because `maxConnections` were open. */
  connectionCapRefused = 0;
  /** Connections destroyed because they had not upgraded within the handshake timeout. */
  preUpgradeTimeouts = 0;
  /** /derp requests without an upgrade (answered 426). */
  upgradeRequired = 0;
  handshakeFailures = 0;
  handshakeTimeouts = 0;
  denied = 0;
  admissionErrors = 0;
  duplicateConnections = 0;
  /** SendPacket frames from local clients, and their payload bytes. */
  packetsReceived = 0;
  bytesReceived = 0;
  packetsReceivedDisco = 0;
  /** RecvPacket frames written to clients, and their payload bytes. */
  packetsSent = 0;
  bytesSent = 0;
  packetsForwardedOut = 0;
  packetsForwardedIn = 0;
  dropQueueFull = 0;
  dropQueueFullDisco = 0;
  dropUnknownDest = 0;
  dropForwardFailed = 0;
  dropClientGone = 0;
  controlDropped = 0;
  writeTimeouts = 0;
  oversizeFrames = 0;
  malformedFrames = 0;
  permissionDenied = 0;
  unknownFrames = 0;
  pingsAnswered = 0;
  keepAlivesSent = 0;
  notHereSent = 0;
  notHereRateLimited = 0;
  peerGoneSent = 0;
  peerPresentSent = 0;
  closePeerRequests = 0;
  rateLimitedPauses = 0;
  meshConnects = 0;
  meshConnectFailures = 0;
  meshDisconnects = 0;

  snapshot(): Record<string, number> {
    return { ...(this as unknown as Record<string, number>) };
  }
}

/** The connections holding one key; `active` receives its packets. */
export interface KeyEntry {
  active: ServerClient;
  all: ServerClient[];
}

interface ForwarderEntry {
  key: PublicKey;
  links: Forwarder[];
}

/** The relay's current gauges (part of DerpServer.stats()). */
export interface RelayGauges {
  connections: number;
  clients: number;
  meshPeers: number;
  watchers: number;
  forwarders: number;
  preferred: number;
  handshaking: number;
  queuedFrames: number;
  socketBufferedBytes: number;
}

export class Relay {
  readonly counters = new ServerCounters();
  /** Every connection, from the upgrade until it closes. */
  readonly conns = new Set<ServerClient>();
  private readonly byKey = new Map<string, KeyEntry>();
  private readonly forwarders = new Map<string, ForwarderEntry>();
  private readonly watchers = new Set<ServerClient>();
  /** src key hex → keys it sent packets to (for PeerGone{Disconnected} when src leaves the region). */
  private readonly sentTo = new Map<string, Set<string>>();
  private dirty: ServerClient[] = [];
  private flushQueued = false;
  private connSeq = 0;
  private readonly timer: DriverTimer;
  private closing = false;
  private readonly flushAll = (): void => {
    this.flushQueued = false;
    const list = this.dirty;
    this.dirty = [];
    for (const c of list) c.flush();
  };

  constructor(
    readonly privateKey: PrivateKey,
    readonly opts: RelayOptions,
    readonly clock: Clock,
    readonly rng: RandomSource,
  ) {
    this.timer = new DriverTimer(clock, () => this.onTick());
  }

  /** Takes over an upgraded stream; `greeting` is written first (the ServerKey frame, after the 101 for TCP). */
  accept(stream: ByteStream, greeting: Uint8Array): ServerClient | undefined {
    if (this.closing) {
      stream.destroy();
      return undefined;
    }
    const c = new ServerClient(this, stream, greeting, ++this.connSeq);
    this.conns.add(c);
    this.counters.accepts++;
    this.timer.armAt(this.clock.now() + DERP.SERVER_TICK_MS);
    return c;
  }

  private onTick(): void {
    const now = this.clock.now();
    for (const c of this.conns) c.tick(now);
    if (this.conns.size > 0 && !this.closing) this.timer.armAt(now + DERP.SERVER_TICK_MS);
  }

  /** Schedules `c.flush()` at the end of the current event-loop turn. */
  markDirty(c: ServerClient): void {
    if (c.dirty) return;
    c.dirty = true;
    this.dirty.push(c);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushAll);
    }
  }

  /** A client finished its handshake: make it reachable and tell the watchers. */
  register(c: ServerClient): void {
    const e = this.byKey.get(c.hex);
    if (!e) this.byKey.set(c.hex, { active: c, all: [c] });
    else {
      e.all.push(c);
      e.active = c;
      for (const x of e.all) x.dup = true;
      this.counters.duplicateConnections++;
    }
    c.registered = true;
    publish(channels.derpServer, () => ({
      event: 'register',
      key: c.key!.toString(),
      mesh: c.isMesh,
      remote: c.remote,
    }));
    if (this.watchers.size > 0) {
      const f = encodeFrame({ type: 'peerPresent', key: c.keyBytes, endpoint: c.remote, flags: c.presenceFlags() });
      for (const w of this.watchers) {
        if (w === c) continue;
        this.counters.peerPresentSent++;
        w.sendControl(f);
      }
    }
  }

  private unregister(c: ServerClient): void {
    c.registered = false;
    this.watchers.delete(c);
    const e = this.byKey.get(c.hex);
    if (!e) return;
    const i = e.all.indexOf(c);
    if (i < 0) return;
    e.all.splice(i, 1);
    if (e.all.length > 0) {
      if (e.active === c) e.active = e.all[e.all.length - 1]!;
      if (e.all.length === 1) e.all[0]!.dup = false;
      return;
    }
    this.byKey.delete(c.hex);
    if (!this.forwarders.has(c.hex)) this.notePeerGoneFromRegion(c.hex, c.keyBytes);
    if (this.watchers.size > 0) {
      const f = encodeFrame({ type: 'peerGone', key: c.keyBytes, reason: PeerGoneReason.DISCONNECTED });
      for (const w of this.watchers) {
        this.counters.peerGoneSent++;
        w.sendControl(f);
      }
    }
  }

  /** Called by a client when it closes, for whatever reason. */
  onClosed(c: ServerClient, reason: string): void {
    this.conns.delete(c);
    if (c.registered) this.unregister(c);
    publish(channels.derpServer, () => ({ event: 'close', key: c.key?.toString(), reason }));
  }

  /** `key` is gone from the region: everyone it sent packets to hears PeerGone{Disconnected}. */
  private notePeerGoneFromRegion(hex: string, keyBytes: Uint8Array): void {
    const set = this.sentTo.get(hex);
    if (!set) return;
    this.sentTo.delete(hex);
    const f = encodeFrame({ type: 'peerGone', key: keyBytes, reason: PeerGoneReason.DISCONNECTED });
    for (const dst of set) {
      const e = this.byKey.get(dst);
      if (!e) continue;
      for (const c of e.all) {
        this.counters.peerGoneSent++;
        c.sendControl(f);
      }
    }
  }

  private noteSent(srcHex: string, dstHex: string): void {
    let set = this.sentTo.get(srcHex);
    if (!set) this.sentTo.set(srcHex, (set = new Set()));
    set.add(dstHex);
  }

  private recvFrame(src: Uint8Array, packet: Uint8Array): Uint8Array {
    const frame = Buffer.allocUnsafe(H + K + packet.length);
    frame[0] = FrameType.RECV_PACKET;
    writeU32(frame, 1, K + packet.length);
    frame.set(src, H);
    frame.set(packet, H + K);
    return frame;
  }

  /**
   * A SendPacket from local client `src`; `p` is its payload (dst key, then the packet). When `inChunk` (the frame
   * lies in a socket chunk nobody else holds) and the destination's socket is flowing, the SendPacket is rewritten
   * into the RecvPacket in place — same length, type 0x04 → 0x05, destination key → source key — and queued without
   * a copy; it leaves in this turn's flush. Otherwise (a frame reassembled across chunks, or a stalled destination
   * whose queue may hold it for a while) the packet is copied, so a queued frame never pins a whole chunk.
   */
  route(src: ServerClient, dstHex: string, buf: Uint8Array, start: number, end: number, inChunk: boolean): void {
    const c = this.counters;
    const plen = end - start - K;
    const disco = isDiscoAt(buf, start + K, end);
    c.packetsReceived++;
    c.bytesReceived += plen;
    if (disco) c.packetsReceivedDisco++;
    if (src.dup) this.noteActive(src);
    let e = src.lastEntry;
    if (e === undefined || e.all.length === 0) {
      // An entry whose key left has no connections; a returning key gets a new entry, so look it up again.
      e = this.byKey.get(dstHex);
      src.lastEntry = e;
    }
    if (e) {
      const dst = e.active;
      if (inChunk && dst.flowing) {
        buf[start - H] = FrameType.RECV_PACKET;
        buf.set(src.keyBytes, start);
        dst.enqueue(buf, start - H, end, 1, disco);
      } else {
        const frame = this.recvFrame(src.keyBytes, buf.subarray(start + K, end));
        dst.enqueue(frame, 0, frame.length, 1, disco);
      }
      if (src.lastNoted !== dstHex) {
        src.lastNoted = dstHex;
        this.noteSent(src.hex, dstHex);
      }
      return;
    }
    const fwd = this.forwarders.get(dstHex);
    if (fwd) {
      if (fwd.links[0]!.forwardPacket(src.key!, fwd.key, buf.subarray(start + K, end))) c.packetsForwardedOut++;
      else c.dropForwardFailed++;
      if (src.lastNoted !== dstHex) {
        src.lastNoted = dstHex;
        this.noteSent(src.hex, dstHex);
      }
      return;
    }
    c.dropUnknownDest++;
    if (disco) src.sendNotHere(buf.subarray(start, start + K));
  }

  /**
   * `count` non-disco SendPackets from `src` to one key lying back to back in a socket chunk: the first's payload is
   * [start, end), the last ends at runEnd. To a flowing local client the whole run is rewritten in place and handed
   * over as one; otherwise each packet takes `route`.
   */
  routeRun(
    src: ServerClient,
    dstHex: string,
    buf: Uint8Array,
    start: number,
    end: number,
    runEnd: number,
    count: number,
  ): void {
    let e = src.lastEntry;
    if (e === undefined || e.all.length === 0) {
      e = this.byKey.get(dstHex);
      src.lastEntry = e;
    }
    if (count === 1 || e === undefined || !e.active.flowing) {
      for (let f = start - H; f < runEnd;) {
        const n = H + readU32(buf, f + 1);
        this.route(src, dstHex, buf, f + H, f + n, true);
        f += n;
      }
      return;
    }
    const c = this.counters;
    c.packetsReceived += count;
    c.bytesReceived += runEnd - (start - H) - count * (H + K);
    if (src.dup) this.noteActive(src);
    const key = src.keyBytes;
    for (let f = start - H; f < runEnd;) {
      const n = H + readU32(buf, f + 1);
      buf[f] = FrameType.RECV_PACKET;
      buf.set(key, f + H);
      f += n;
    }
    e.active.enqueue(buf, start - H, runEnd, count, false);
    if (src.lastNoted !== dstHex) {
      src.lastNoted = dstHex;
      this.noteSent(src.hex, dstHex);
    }
  }

  /** A ForwardPacket from mesh peer `from`: deliver locally or drop (one hop only). */
  routeForwarded(_from: ServerClient, p: Uint8Array): void {
    const c = this.counters;
    c.packetsForwardedIn++;
    const dstHex = keyHexAt(p, K);
    const e = this.byKey.get(dstHex);
    if (!e) {
      c.dropUnknownDest++;
      return;
    }
    const packet = p.subarray(2 * K);
    const frame = this.recvFrame(p.subarray(0, K), packet);
    e.active.enqueue(frame, 0, frame.length, 1, isDisco(packet));
    this.noteSent(keyHexAt(p, 0), dstHex);
  }

  /** Last writer is active: a duplicate that sends takes over delivery for its key. */
  private noteActive(c: ServerClient): void {
    const e = this.byKey.get(c.hex);
    if (e && e.active !== c && c.registered) e.active = c;
  }

  /** A mesh peer asked to watch: flood PeerPresent for everyone here, then stream changes. */
  addWatcher(w: ServerClient): void {
    if (this.watchers.has(w)) return;
    this.watchers.add(w);
    for (const e of this.byKey.values()) {
      const c = e.active;
      if (c === w) continue;
      this.counters.peerPresentSent++;
      w.sendControl(
        encodeFrame({ type: 'peerPresent', key: c.keyBytes, endpoint: c.remote, flags: c.presenceFlags() }),
      );
    }
  }

  /** Closes every local connection of `hex` (mesh ClosePeer). */
  closePeer(hex: string): void {
    const e = this.byKey.get(hex);
    if (!e) return;
    for (const c of [...e.all]) c.close('closed by mesh peer');
  }

  /** A mesh link saw `key` present on its node. Local clients keep priority over forwarders. */
  addForwarder(key: PublicKey, link: Forwarder): void {
    if (key.equals(this.privateKey.publicKey)) return;
    const f = this.forwarders.get(key.hex);
    if (!f) this.forwarders.set(key.hex, { key, links: [link] });
    else if (!f.links.includes(link)) f.links.unshift(link);
    publish(channels.derpServer, () => ({ event: 'forwarder-add', key: key.toString(), via: link.name }));
  }

  /** A mesh link saw `hex` leave its node (or the link broke). */
  removeForwarder(hex: string, link: Forwarder): void {
    const f = this.forwarders.get(hex);
    if (!f) return;
    const i = f.links.indexOf(link);
    if (i < 0) return;
    f.links.splice(i, 1);
    if (f.links.length > 0) return;
    this.forwarders.delete(hex);
    publish(channels.derpServer, () => ({ event: 'forwarder-remove', key: f.key.toString(), via: link.name }));
    if (!this.byKey.has(hex)) this.notePeerGoneFromRegion(hex, f.key.bytes);
  }

  /** Removes every forwarder that goes through `link` (the link closed). */
  removeLink(link: Forwarder): void {
    for (const [hex, f] of [...this.forwarders]) if (f.links.includes(link)) this.removeForwarder(hex, link);
  }

  /** Whether a local client holds `hex`. */
  hasLocal(hex: string): boolean {
    return this.byKey.has(hex);
  }

  /** Gauges for stats(). */
  gauges(): RelayGauges {
    let mesh = 0;
    let preferred = 0;
    let handshaking = 0;
    let queued = 0;
    let buffered = 0;
    for (const c of this.conns) {
      buffered += c.stream.bufferedAmount;
      if (c.state === 'handshake' || c.state === 'admitting') handshaking++;
      if (c.isMesh && c.registered) mesh++;
      if (c.preferred && c.registered) preferred++;
      queued += c.queued;
    }
    return {
      connections: this.conns.size,
      clients: this.byKey.size,
      meshPeers: mesh,
      watchers: this.watchers.size,
      forwarders: this.forwarders.size,
      preferred,
      handshaking,
      queuedFrames: queued,
      socketBufferedBytes: buffered,
    };
  }

  /** Ends every connection and stops the timer. */
  close(): void {
    this.closing = true;
    this.timer.stop();
    for (const c of [...this.conns]) c.end();
  }
}
