/**
 * MagicSocket — the virtual UDP socket addressed by peer public key (DESIGN.md, "The virtual socket's contract").
 *
 * This file is the driver: it owns the UDP sockets (udp-transport.ts), the relay transport (DERP), the STUN
 * client, the signaller subscription and exactly one timer; per-peer decisions live in the sans-IO core
 * (endpoint.ts), our endpoint list in local-endpoints.ts. Every received datagram is classified by its first bytes:
 * STUN → disco → data (DESIGN.md decision 2). Disco messages from keys not bound to a peer are dropped and counted;
 * data from an address no authenticated disco exchange has tied to a peer is dropped and counted.
 */
import { EventEmitter } from 'node:events';
import { isDisco, openDisco, sealDisco } from '../disco/envelope.js';
import type { DiscoMessage } from '../disco/message.js';
import { ErrorCode, MeshsockError } from '../errors.js';
import { formatAddrPort, normalizeIp, type AddrPort } from '../internal/addr.js';
import { bytesEqual, toHex } from '../internal/bytes.js';
import {
  DriverTimer,
  randomFloat,
  systemClock,
  systemRandom,
  type Clock,
  type RandomSource,
} from '../internal/clock.js';
import { Counters, channels, publish } from '../internal/diagnostics.js';
import { PrivateKey, PublicKey } from '../key/keys.js';
import { openSignal, isSignalEnvelope, sealSignal, signalSender } from '../signal/envelope.js';
import type { Signaller } from '../signal/signaller.js';
import { isStun } from '../stun/message.js';
import { StunClient } from '../stun/client.js';
import { MAGICSOCK } from './constants.js';
import type { EndpointAction } from './endpoint.js';
import { LocalEndpoints, type TypedEndpoint } from './local-endpoints.js';
import { NO_PATH, PeerState, directPath, type PathInfo, type PeerHints } from './peer-state.js';
import type { RelayTransport } from './relay.js';
import { DerpRelay, toDerpMap } from './derp-transport.js';
import { PortMapper } from '../portmap/port-mapper.js';
import { UdpTransport, type Family } from './udp-transport.js';
import { MAX_DATAGRAM, normalizeBind, toAddrPort, toPublicKey, type MagicSocketOptions } from './options.js';
import { peerStatus, type SocketStatus } from './status.js';
import { waitForPath } from './wait-for-path.js';
import { MessageIterator, type ReceivedMessage } from './message-iterator.js';
import { interfaceSignature } from './interfaces.js';

type CounterName =
  | 'rx-data'
  | 'tx-data'
  | 'tx-data-derp'
  | 'rx-data-derp'
  | 'rx-stun'
  | 'rx-disco'
  | 'tx-disco'
  | 'drop-unknown-source'
  | 'drop-unproven-source'
  | 'drop-stun-unmatched'
  | 'drop-disco-unknown-key'
  | 'drop-disco-bad-box'
  | 'drop-disco-malformed'
  | 'drop-disco-wrong-node-key'
  | 'drop-pong-unmatched'
  | 'drop-cmm-not-signalled'
  | 'drop-signal-malformed'
  | 'drop-signal-unknown-peer'
  | 'drop-signal-bad-box'
  | 'drop-signal-unexpected'
  | 'drop-relay-unknown-peer'
  | 'drop-duplicate'
  | 'drop-pending-full'
  | 'drop-pending-expired'
  | 'drop-iterator-full'
  | 'drop-no-path'
  | 'drop-relay-send'
  | 'send-errors'
  | 'signal-send-errors'
  | 'signal-sent'
  | 'signal-received'
  | 'cmm-no-channel'
  | 'rebinds'
  | 'restun'
  | 'portmap-errors';

// Typed event signatures for the EventEmitter below (declaration merging is the documented Node idiom).
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export declare interface MagicSocket {
  on(event: 'message', listener: (data: Uint8Array, peer: PublicKey, path: PathInfo) => void): this;
  on(event: 'path', listener: (peer: PublicKey, path: PathInfo, previous: PathInfo, reason: string) => void): this;
  on(event: 'close', listener: () => void): this;
}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class MagicSocket extends EventEmitter {
  readonly publicKey: PublicKey;
  readonly discoPublicKey: PublicKey;
  /** Why datagrams and messages were dropped, and how many went where. */
  readonly counters = new Counters<CounterName>();
  private readonly privateKey: PrivateKey;
  private readonly discoKey: PrivateKey;
  private readonly peers = new Map<string, PeerState>();
  private readonly byDisco = new Map<string, PeerState>();
  /** Addresses proven by a pong (our fresh TxID answered from there): data from them is the peer's. */
  private readonly byAddr = new Map<string, PeerState>();
  /** Candidate addresses not yet proven; data from them is held briefly until a pong proves them. */
  private readonly unproven = new Map<string, PeerState>();
  /** The last data source resolved through byAddr (cleared whenever byAddr loses an entry). */
  private rxCacheIp = '';
  private rxCachePort = -1;
  private rxCacheKey = '';
  private rxCachePeer: PeerState | undefined;
  private readonly clock: Clock;
  private readonly rng: RandomSource;
  private readonly timer: DriverTimer;
  private udp!: UdpTransport;
  private stun!: StunClient;
  private endpoints!: LocalEndpoints;
  private relay: RelayTransport | undefined;
  private derp: DerpRelay | undefined;
  private portMapper: PortMapper | undefined;
  private portMapOpts: { gateway?: string; protocols?: ReadonlyArray<'pmp' | 'pcp' | 'upnp'> } | undefined;
  private signaller: Signaller | undefined;
  private unlisten: (() => void) | undefined;
  private closed = false;
  private nextRestunAt = Infinity;
  private nextIfacePollAt = Infinity;
  private ifaceSig = '';
  private lastRebindAt = -Infinity;
  private readonly ifacePollMs: number;
  private readonly bind: { v4: string | false; v6: string | false };

  private constructor(opts: MagicSocketOptions) {
    super();
    this.privateKey = typeof opts.privateKey === 'string' ? PrivateKey.parse(opts.privateKey) : opts.privateKey;
    if (!(this.privateKey instanceof PrivateKey))
      throw new TypeError('"privateKey" must be a PrivateKey or privkey: text');
    this.clock = opts.clock ?? systemClock;
    this.rng = opts.rng ?? systemRandom;
    this.discoKey = PrivateKey.generate('disco', this.rng);
    this.publicKey = this.privateKey.publicKey;
    this.discoPublicKey = this.discoKey.publicKey;
    this.timer = new DriverTimer(this.clock, () => this.onTimer());
    this.bind = normalizeBind(opts.bindAddress);
    const wildcard = this.bind.v4 === '0.0.0.0' || this.bind.v6 === '::';
    this.ifacePollMs = opts.interfacePollMs ?? (wildcard ? MAGICSOCK.INTERFACE_POLL_MS : 0);
  }

  /** Binds the sockets and starts endpoint discovery. Rejects with BAD_CONFIG or BIND. */
  static async create(opts: MagicSocketOptions): Promise<MagicSocket> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('"opts" must be an object');
    const port = opts.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, `port must be an integer in 0..65535, got ${String(opts.port)}`);
    const stunServers = (opts.stunServers ?? []).map((s) => toAddrPort(s, 'stunServers'));
    if (opts.derpMap !== undefined && opts.relay !== undefined)
      throw new MeshsockError(ErrorCode.BAD_CONFIG, 'give either derpMap or relay, not both');
    const derpMap = opts.derpMap === undefined ? undefined : toDerpMap(opts.derpMap);
    const ms = new MagicSocket(opts);
    ms.udp = await UdpTransport.bind(
      { v4: ms.bind.v4, v6: ms.bind.v6, port, bufferBytes: opts.socketBufferBytes ?? MAGICSOCK.SOCKET_BUFFER_BYTES },
      (msg, ip, p, fam) => ms.onUdp(msg, ip, p, fam),
      (err) => ms.onUdpError(err),
    );
    ms.stun = new StunClient({ send: (b, to) => void ms.udp.send(b, to.ip, to.port), clock: ms.clock, rng: ms.rng });
    if (derpMap) {
      ms.derp = new DerpRelay({
        privateKey: ms.privateKey,
        derpMap,
        clock: ms.clock,
        rng: ms.rng,
        send: (b, to) => void ms.udp.send(b, to.ip, to.port),
        families: { v4: ms.udp.hasFamily(4), v6: ms.udp.hasFamily(6) },
      });
    }
    const derp = ms.derp;
    ms.endpoints = new LocalEndpoints(ms.udp, ms.stun, stunServers, ms.bind, derp && (() => derp.probe()));
    ms.signaller = opts.signaller;
    ms.unlisten = opts.signaller?.listen(ms.publicKey, (m) => ms.onSignal(m, 'signaller'));
    const relay = opts.relay ?? ms.derp;
    if (relay) ms.attachRelay(relay);
    const pm = opts.portMapping ?? ms.bind.v4 === '0.0.0.0';
    if (pm !== false && ms.udp.hasFamily(4)) {
      ms.portMapOpts = pm === true ? {} : pm;
      ms.startPortMapper();
    }
    ms.ifaceSig = interfaceSignature();
    const now = ms.clock.now();
    if (ms.ifacePollMs > 0) ms.nextIfacePollAt = now + ms.ifacePollMs;
    if (stunServers.length || ms.derp) ms.restun('startup');
    ms.rearm();
    return ms;
  }

  private attachRelay(relay: RelayTransport): void {
    this.relay = relay;
    relay.onPacket((src, packet, region) => this.onRelayPacket(src, packet, region));
    relay.onChange(() => {
      if (this.closed) return;
      const now = this.clock.now();
      for (const p of this.peers.values()) {
        this.updatePath(p, 'relay-change');
        if (!relay.canSend(this.regionFor(p))) continue;
        if (p.pending.length) this.flushPending(p, now);
        if (p.callMeMaybeUndelivered) this.sendCallMeMaybeNow(p);
      }
      this.rearm();
    });
  }

  // ---- public API -------------------------------------------------------------------------------------------

  /** Adds a peer by its node public key; discovery starts at once. Adding it again merges the hints. */
  addPeer(peer: PublicKey | string, hints: PeerHints = {}): void {
    this.assertOpen();
    const key = toPublicKey(peer, 'peer');
    if (key.equals(this.publicKey)) throw new MeshsockError(ErrorCode.BAD_CONFIG, 'cannot add ourselves as a peer');
    const now = this.clock.now();
    let p = this.peers.get(key.hex);
    if (!p) {
      p = new PeerState(key, this.privateKey, this.rng);
      this.peers.set(key.hex, p);
    }
    const endpoints = (hints.endpoints ?? []).map((e) => toAddrPort(e, 'hints.endpoints'));
    if (hints.derpRegion !== undefined) p.derpRegion = hints.derpRegion;
    if (hints.discoKey !== undefined) {
      const dk = toPublicKey(hints.discoKey, 'hints.discoKey', 'disco');
      if (p.bindDisco(dk.bytes, this.discoKey, true)) this.byDisco.set(dk.hex, p);
    }
    this.run(p, p.core.addHints(endpoints, now), now);
    // Discovery starts on the timer (due now), after this tick: a datagram the application sends right after
    // addPeer goes out first and is not queued behind the CallMeMaybe and pings on the relay.
    p.core.requestDiscovery(now);
    this.updatePath(p, 'added');
    this.rearm();
  }

  /** Forgets a peer: its datagrams are no longer accepted and sends to it throw UNKNOWN_PEER. */
  removePeer(peer: PublicKey | string): boolean {
    const key = toPublicKey(peer, 'peer');
    const p = this.peers.get(key.hex);
    if (!p) return false;
    this.peers.delete(key.hex);
    this.rxCachePeer = undefined;
    if (p.discoKey && this.byDisco.get(p.discoKey.hex) === p) this.byDisco.delete(p.discoKey.hex);
    for (const c of p.core.candidates.keys()) {
      if (this.byAddr.get(c) === p) this.byAddr.delete(c);
      if (this.unproven.get(c) === p) this.unproven.delete(c);
    }
    this.rearm();
    return true;
  }

  /**
   * Sends one datagram to a peer, like `dgram.send`: best effort, no error for network conditions. Throws
   * UNKNOWN_PEER (add the peer first), TOO_LARGE (over 65,507 bytes) or CLOSED.
   */
  send(peer: PublicKey | string, data: Uint8Array): void {
    if (this.closed) throw new MeshsockError(ErrorCode.CLOSED, 'socket is closed');
    const p = this.peers.get(typeof peer === 'string' ? toPublicKey(peer, 'peer').hex : peer.hex);
    if (p === undefined)
      throw new MeshsockError(ErrorCode.UNKNOWN_PEER, `unknown peer ${String(peer)}; call addPeer first`);
    if (!(data instanceof Uint8Array)) throw new TypeError(`"data" expected Uint8Array, got ${typeof data}`);
    if (data.length > MAX_DATAGRAM)
      throw new MeshsockError(ErrorCode.TOO_LARGE, `datagram of ${data.length} bytes exceeds ${MAX_DATAGRAM}`);
    const now = this.clock.now();
    p.txPackets++;
    p.txBytes += data.length;
    const b = p.core.best;
    if (b !== undefined && now < b.trustUntil) {
      // Hot path: a trusted direct path. No allocation, no timer work.
      p.core.lastSendAt = now;
      this.udp.send(data, b.addr.ip, b.addr.port);
      this.counters.inc('tx-data');
      return;
    }
    const { route, actions } = p.core.onSend(now);
    let sent = false;
    if (route.udp) sent = this.udp.send(data, route.udp.ip, route.udp.port);
    if (route.derp && this.relay?.canSend(this.regionFor(p))) {
      if (this.relay.send(this.regionFor(p), p.key, data)) {
        sent = true;
        this.counters.inc('tx-data-derp');
      } else this.counters.inc('drop-relay-send');
    }
    // A suspect direct path is skipped in favour of DERP; without a relay it is still the best there is.
    if (!sent && !route.udp && b !== undefined) sent = this.udp.send(data, b.addr.ip, b.addr.port);
    if (sent) this.counters.inc('tx-data');
    else if (!p.enqueue(data, now)) this.counters.inc('drop-pending-full');
    if (actions.length === 0) {
      this.rearm();
      return;
    }
    // Pings and a CallMeMaybe cost NaCl boxes; do them after this call returns, once the datagram's relay write
    // has been flushed (DerpConn uncorks on nextTick; setImmediate runs after it however send() was called).
    setImmediate(() => {
      if (this.closed || this.peers.get(p.key.hex) !== p) return;
      this.run(p, actions, now);
      this.rearm();
    });
  }

  /** An async iterator over received datagrams; ends when the socket closes or `signal` aborts. */
  messages(opts: { signal?: AbortSignal; highWaterMark?: number } = {}): AsyncIterableIterator<ReceivedMessage> {
    return new MessageIterator(this, opts.highWaterMark ?? MAGICSOCK.ITERATOR_QUEUE_MAX, opts.signal, () =>
      this.counters.inc('drop-iterator-full'),
    );
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this.messages();
  }

  /** The current path to a peer. */
  pathOf(peer: PublicKey | string): PathInfo {
    return this.peers.get(toPublicKey(peer, 'peer').hex)?.path ?? NO_PATH;
  }

  /**
   * Resolves when the peer's path is of the wanted type ('direct' by default; 'any' = direct or DERP). Rejects
   * with TIMEOUT, ABORTED, CLOSED or UNKNOWN_PEER.
   */
  waitForPath(
    peer: PublicKey | string,
    opts: { type?: 'direct' | 'derp' | 'any'; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<PathInfo> {
    const key = toPublicKey(peer, 'peer');
    if (this.closed) return Promise.reject(new MeshsockError(ErrorCode.CLOSED, 'socket is closed'));
    const st = this.peers.get(key.hex);
    if (!st) return Promise.reject(new MeshsockError(ErrorCode.UNKNOWN_PEER, `unknown peer ${key.toString()}`));
    return waitForPath(this, this.clock, key, st.path, opts);
  }

  /** Everything about the socket and each peer: paths, candidates, latencies, and why a peer is not direct. */
  status(): SocketStatus {
    const now = this.clock.now();
    return {
      publicKey: this.publicKey.toString(),
      discoKey: this.discoPublicKey.toString(),
      localAddresses: this.udp.localAddresses().map(formatAddrPort),
      endpoints: this.endpoints.list(now).map((e) => ({ addr: formatAddrPort(e.addr), type: e.type })),
      udpWorks: this.endpoints.udpWorks,
      mappingVariesByDestIP: this.endpoints.mappingVariesByDestIP,
      relay: this.relay?.status(),
      portMapping: this.portMapper && portMappingStatus(this.portMapper),
      peers: [...this.peers.values()].map((p) => peerStatus(p, now)),
      counters: this.counters.snapshot(),
    };
  }

  /** Re-binds the sockets and rediscovers every path (call after a known network change). */
  async rebind(reason = 'manual'): Promise<void> {
    this.assertOpen();
    this.lastRebindAt = this.clock.now();
    this.counters.inc('rebinds');
    publish(channels.rebind, () => ({ reason }));
    await this.udp.rebind();
    if (this.closed) return;
    if (this.portMapper) {
      const old = this.portMapper;
      this.portMapper = undefined;
      this.endpoints.setPortmapped(undefined);
      void old.close();
      this.startPortMapper();
    }
    this.derp?.onRebind();
    const now = this.clock.now();
    for (const p of this.peers.values()) this.run(p, p.core.reset(now), now);
    this.restun(`rebind:${reason}`);
    this.rearm();
  }

  /** (Re)starts the port mapper for our current IPv4 port. Failures are counted, never thrown. */
  private startPortMapper(): void {
    const port = this.udp.port(4);
    if (!this.portMapOpts || port === undefined) return;
    const pm = new PortMapper({
      internalPort: port,
      clock: this.clock,
      rng: this.rng,
      ...(this.portMapOpts.gateway ? { gateway: this.portMapOpts.gateway } : {}),
      ...(this.portMapOpts.protocols ? { protocols: this.portMapOpts.protocols } : {}),
    });
    this.portMapper = pm;
    pm.on('mapping', (m) => {
      if (this.closed || this.portMapper !== pm) return;
      if (!this.endpoints.setPortmapped(m?.external)) return;
      // A new public endpoint: tell every peer that is not on a trusted direct path.
      const now = this.clock.now();
      for (const p of this.peers.values()) if (!p.core.trustedBest(now)) this.sendCallMeMaybeNow(p);
    });
    pm.start().catch(() => this.counters.inc('portmap-errors'));
  }

  /** Closes the sockets, the relay and the signaller subscription. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.timer.stop();
    this.unlisten?.();
    this.stun.close();
    await this.portMapper?.close();
    this.udp.close();
    await this.relay?.close();
    this.emit('close');
    this.removeAllListeners('message');
  }

  // ---- receive paths ----------------------------------------------------------------------------------------

  private onUdp(msg: Buffer, ip: string, port: number, family: Family): void {
    if (isStun(msg)) {
      this.counters.inc('rx-stun');
      const from = { ip: normalizeIp(ip), port };
      if (!this.derp?.handleStunPacket(msg, from) && !this.stun.handlePacket(msg, from))
        this.counters.inc('drop-stun-unmatched');
      return;
    }
    if (isDisco(msg)) {
      this.handleDisco(msg, { ip: normalizeIp(ip), port }, undefined, undefined);
      return;
    }
    // Most datagrams come from the same source as the one before: skip building the key and the map lookup.
    let addrKey: string;
    let p: PeerState | undefined;
    if (port === this.rxCachePort && ip === this.rxCacheIp && this.rxCachePeer !== undefined) {
      p = this.rxCachePeer;
      addrKey = this.rxCacheKey;
    } else {
      addrKey = family === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
      p = this.byAddr.get(addrKey);
      if (p !== undefined) {
        this.rxCacheIp = ip;
        this.rxCachePort = port;
        this.rxCacheKey = addrKey;
        this.rxCachePeer = p;
      }
    }
    if (p === undefined) {
      const q = this.unproven.get(addrKey);
      if (q !== undefined) {
        // A peer that learned the path first may send before our pong from it arrives: hold, do not trust yet.
        const now = this.clock.now();
        const wasEmpty = q.heldDeadline() === Infinity;
        const dropped = q.hold(addrKey, msg, now);
        if (dropped) this.counters.inc('drop-unproven-source', dropped);
        if (wasEmpty) this.rearm();
        return;
      }
      this.counters.inc('drop-unknown-source');
      publish(channels.drop, () => ({ where: 'udp', reason: 'unknown-source', from: addrKey }));
      return;
    }
    const now = this.clock.now();
    p.core.lastRecvAt = now;
    if (p.dedupActive(now) && !p.dedup.admit(msg, false, now)) {
      this.counters.inc('drop-duplicate');
      return;
    }
    this.deliver(p, msg, p.rxDirectPath(addrKey));
  }

  private onRelayPacket(src: PublicKey, packet: Uint8Array, region: number): void {
    if (this.closed) return;
    if (isDisco(packet)) {
      this.handleDisco(packet, undefined, region, src);
      return;
    }
    if (isSignalEnvelope(packet)) {
      this.onSignal(packet, 'relay', src, region);
      return;
    }
    const p = this.peers.get(src.hex);
    if (!p) {
      this.counters.inc('drop-relay-unknown-peer');
      return;
    }
    const now = this.clock.now();
    p.lastHeardRegion = region;
    p.lastDerpRecvAt = now;
    const actions = p.core.onRecv(now, true);
    if (actions) {
      this.run(p, actions, now);
      this.rearm();
    }
    if (!p.dedup.admit(packet, true, now)) {
      this.counters.inc('drop-duplicate');
      return;
    }
    this.counters.inc('rx-data-derp');
    this.deliver(p, packet, { type: 'derp', region });
  }

  private deliver(p: PeerState, data: Uint8Array, path: PathInfo): void {
    p.rxPackets++;
    p.rxBytes += data.length;
    this.counters.inc('rx-data');
    this.emit('message', data, p.key, path);
  }

  /** A disco packet over UDP (`src` set) or DERP (`region` and `relaySrc` set). */
  private handleDisco(
    msg: Uint8Array,
    src: AddrPort | undefined,
    region: number | undefined,
    relaySrc: PublicKey | undefined,
  ): void {
    this.counters.inc('rx-disco');
    const senderHex = toHex(msg.subarray(6, 38));
    let p = this.byDisco.get(senderHex);
    if (!p && relaySrc) {
      // DERP authenticated the sender's node key: a known peer may introduce its disco key this way (DESIGN.md).
      const byNode = this.peers.get(relaySrc.hex);
      if (byNode && byNode.bindDisco(msg.subarray(6, 38), this.discoKey, false)) {
        this.byDisco.set(senderHex, byNode);
        p = byNode;
      }
    }
    if (!p || !p.discoShared) return this.drop('drop-disco-unknown-key', 'disco', src);
    if (relaySrc && !relaySrc.equals(p.key)) return this.drop('drop-disco-wrong-node-key', 'disco', src);
    let m: DiscoMessage | undefined;
    try {
      m = openDisco(msg, p.discoShared);
    } catch {
      return this.drop('drop-disco-malformed', 'disco', src);
    }
    if (!m) return this.drop('drop-disco-bad-box', 'disco', src);
    p.knowsOurDisco = true;
    const now = this.clock.now();
    if (region !== undefined) p.lastHeardRegion = region;
    publish(channels.disco, () => ({
      dir: 'rx',
      type: m.type,
      peer: p.key.toString(),
      addr: src && formatAddrPort(src),
      region,
    }));
    switch (m.type) {
      case 'ping': {
        if (m.nodeKey && !bytesEqual(m.nodeKey, p.key.bytes))
          return this.drop('drop-disco-wrong-node-key', 'disco', src);
        if (src) {
          // Our own ping (if any) goes out before the pong, so the peer answers it before it starts sending data.
          this.run(p, p.core.onPing(src, now), now);
          this.sendDisco(p, src, { type: 'pong', txId: m.txId, src });
        } else if (this.relay) {
          this.relay.send(
            region,
            p.key,
            this.sealFor(p, { type: 'pong', txId: m.txId, src: { ip: '127.3.3.40', port: region ?? 0 } }),
          );
        }
        break;
      }
      case 'pong': {
        if (!src) break; // we never ping over DERP; a pong there answers nothing of ours
        const actions = p.core.onPong(toHex(m.txId), src, m.src, now);
        if (!actions) return this.drop('drop-pong-unmatched', 'disco', src);
        this.prove(p, formatAddrPort(src), now);
        this.run(p, actions, now);
        break;
      }
      case 'callMeMaybe':
        // Tailscale accepts CallMeMaybe only via DERP, where the node key is authenticated.
        if (!relaySrc) return this.drop('drop-cmm-not-signalled', 'disco', src);
        this.run(p, p.core.onCallMeMaybe(m.endpoints, now, true), now);
        break;
    }
    this.rearm();
  }

  /** A signal envelope from the signaller or from DERP. */
  private onSignal(msg: Uint8Array, via: 'signaller' | 'relay', relaySrc?: PublicKey, region?: number): void {
    if (this.closed) return;
    if (!(msg instanceof Uint8Array) || !isSignalEnvelope(msg)) return this.drop('drop-signal-malformed', via);
    const sender = signalSender(msg)!;
    const p = this.peers.get(toHex(sender));
    if (!p) return this.drop('drop-signal-unknown-peer', via);
    if (relaySrc && !relaySrc.equals(p.key)) return this.drop('drop-signal-bad-box', via);
    let content;
    try {
      content = openSignal(msg, p.nodeShared);
    } catch {
      return this.drop('drop-signal-malformed', via);
    }
    if (!content) return this.drop('drop-signal-bad-box', via);
    if (content.message.type !== 'callMeMaybe') return this.drop('drop-signal-unexpected', via);
    this.counters.inc('signal-received');
    const now = this.clock.now();
    if (region !== undefined) p.lastHeardRegion = region;
    const oldDisco = p.discoKey?.hex;
    if (p.bindDisco(content.senderDisco, this.discoKey, false)) {
      if (oldDisco && this.byDisco.get(oldDisco) === p) this.byDisco.delete(oldDisco);
      this.byDisco.set(p.discoKey!.hex, p);
      // A new disco key means the peer restarted: whatever we knew about its paths is stale.
      if (oldDisco) this.run(p, p.core.reset(now), now);
    }
    const knowsUs =
      content.knownReceiverDisco !== undefined && bytesEqual(content.knownReceiverDisco, this.discoPublicKey.bytes);
    if (knowsUs) p.knowsOurDisco = true;
    this.run(p, p.core.onCallMeMaybe(content.message.endpoints, now, knowsUs), now);
    this.rearm();
  }

  private drop(counter: CounterName, where: string, src?: AddrPort): void {
    this.counters.inc(counter);
    publish(channels.drop, () => ({ where, reason: counter, from: src && formatAddrPort(src) }));
  }

  // ---- actions ----------------------------------------------------------------------------------------------

  private run(p: PeerState, actions: EndpointAction[], now: number): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'ping':
          if (p.discoShared)
            this.sendDisco(p, a.to, { type: 'ping', txId: a.txId, nodeKey: this.publicKey.bytes, padding: 0 }, true);
          break;
        case 'callMeMaybe':
          this.sendCallMeMaybe(p, now);
          break;
        case 'learnAddr':
          if (this.byAddr.get(a.key) !== p) this.unproven.set(a.key, p);
          break;
        case 'forgetAddr':
          this.rxCachePeer = undefined;
          if (this.byAddr.get(a.key) === p) this.byAddr.delete(a.key);
          if (this.unproven.get(a.key) === p) this.unproven.delete(a.key);
          break;
        case 'observedAddr':
          this.endpoints.noteObserved({ ip: normalizeIp(a.addr.ip), port: a.addr.port }, now);
          break;
        case 'bestChanged':
          p.lastPathChangeAt = now;
          this.updatePath(p, a.reason);
          if (a.best && p.pending.length) this.flushPending(p, now);
          break;
      }
    }
  }

  /** A pong from `addrKey` proved it: accept data from it, and deliver what was held meanwhile. */
  private prove(p: PeerState, addrKey: string, now: number): void {
    if (this.byAddr.get(addrKey) === p) return;
    this.byAddr.set(addrKey, p);
    this.unproven.delete(addrKey);
    const [held, expired] = p.release(addrKey, now);
    if (expired) this.counters.inc('drop-unproven-source', expired);
    const path = p.rxDirectPath(addrKey);
    for (const d of held) this.deliver(p, d, path);
  }

  private sealFor(p: PeerState, m: DiscoMessage): Uint8Array {
    return sealDisco(this.discoPublicKey.bytes, p.discoShared!, m, this.rng);
  }

  private sendDisco(p: PeerState, to: AddrPort, m: DiscoMessage, checked = false): void {
    this.counters.inc('tx-disco');
    const bytes = this.sealFor(p, m);
    publish(channels.disco, () => ({ dir: 'tx', type: m.type, peer: p.key.toString(), addr: formatAddrPort(to) }));
    if (!checked) {
      this.udp.send(bytes, to.ip, to.port);
      return;
    }
    this.udp.sendChecked(bytes, to, (err) => {
      if (!err || this.closed) return;
      this.counters.inc('send-errors');
      if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'EAFNOSUPPORT') {
        const now = this.clock.now();
        this.run(p, p.core.onSendError(formatAddrPort(to), now), now);
        this.rearm();
      } else this.maybeRebindOnError(err);
    });
  }

  private sendCallMeMaybe(p: PeerState, now: number): void {
    if (this.endpoints.stale(now)) {
      // Endpoints older than ENDPOINTS_FRESH_MS: refresh them first so the peer gets current ones.
      void this.endpoints
        .refresh(() => this.clock.now())
        .finally(() => {
          if (!this.closed && this.peers.get(p.key.hex) === p) this.sendCallMeMaybeNow(p);
        });
      return;
    }
    this.sendCallMeMaybeNow(p);
  }

  private sendCallMeMaybeNow(p: PeerState): void {
    const now = this.clock.now();
    const message: DiscoMessage = {
      type: 'callMeMaybe',
      endpoints: this.endpoints.list(now).map((e: TypedEndpoint) => e.addr),
    };
    const region = this.regionFor(p);
    let sent = false;
    if (this.relay?.canSend(region)) {
      // Over DERP: Tailscale's plain disco CallMeMaybe when a coordination server gave both sides the disco keys;
      // otherwise the signal envelope, which also introduces our disco key.
      const bytes =
        p.discoFromHints && p.discoShared
          ? this.sealFor(p, message)
          : sealSignal(
              this.publicKey.bytes,
              p.nodeShared,
              { senderDisco: this.discoPublicKey.bytes, knownReceiverDisco: p.discoKey?.bytes, message },
              this.rng,
            );
      sent = this.relay.send(region, p.key, bytes);
    }
    if (this.signaller) {
      const env = sealSignal(
        this.publicKey.bytes,
        p.nodeShared,
        { senderDisco: this.discoPublicKey.bytes, knownReceiverDisco: p.discoKey?.bytes, message },
        this.rng,
      );
      try {
        const r = this.signaller.send(p.key, env);
        if (r && typeof (r as Promise<void>).catch === 'function')
          (r as Promise<void>).catch(() => this.counters.inc('signal-send-errors'));
        sent = true;
      } catch {
        this.counters.inc('signal-send-errors');
      }
    }
    p.callMeMaybeUndelivered = !sent;
    this.counters.inc(sent ? 'signal-sent' : 'cmm-no-channel');
  }

  private flushPending(p: PeerState, now: number): void {
    const [fresh, expired] = p.takePending(now);
    if (expired) this.counters.inc('drop-pending-expired', expired);
    const b = p.core.best;
    for (const d of fresh) {
      if (b) this.udp.send(d, b.addr.ip, b.addr.port);
      else if (this.relay?.send(this.regionFor(p), p.key, d)) this.counters.inc('tx-data-derp');
      else this.counters.inc('drop-no-path');
    }
  }

  private regionFor(p: PeerState): number | undefined {
    return p.derpRegion ?? p.lastHeardRegion ?? this.relay?.homeRegion();
  }

  private updatePath(p: PeerState, reason: string): void {
    const b = p.core.best;
    let next: PathInfo;
    if (b) next = p.path.type === 'direct' && p.path.addr === b.key ? p.path : directPath(b.addr, b.latencyMs);
    else if (this.relay?.canSend(this.regionFor(p))) {
      const region = this.regionFor(p);
      next = p.path.type === 'derp' && p.path.region === region ? p.path : { type: 'derp', region };
    } else next = NO_PATH;
    if (next === p.path) return;
    const prev = p.path;
    p.path = next;
    publish(channels.path, () => ({ peer: p.key.toString(), from: prev, to: next, reason }));
    this.emit('path', p.key, next, prev, reason);
  }

  // ---- timers, STUN, rebind ---------------------------------------------------------------------------------

  private onTimer(): void {
    if (this.closed) return;
    const now = this.clock.now();
    for (const p of this.peers.values()) {
      if (p.core.pollTimeout(now) <= now) this.run(p, p.core.onTimeout(now), now);
      const expired = p.expireHeld(now);
      if (expired) this.counters.inc('drop-unproven-source', expired);
    }
    if (now >= this.nextRestunAt) {
      this.nextRestunAt = Infinity;
      if (this.anyActive(now)) this.restun('periodic');
    }
    if (now >= this.nextIfacePollAt) {
      this.nextIfacePollAt = now + this.ifacePollMs;
      const sig = interfaceSignature();
      if (sig !== this.ifaceSig) {
        this.ifaceSig = sig;
        void this.rebind('interface-change').catch(() => this.counters.inc('send-errors'));
      }
    }
    this.rearm();
  }

  private rearm(): void {
    if (this.closed) return;
    const now = this.clock.now();
    let t = Math.min(this.nextRestunAt, this.nextIfacePollAt);
    for (const p of this.peers.values()) t = Math.min(t, p.core.pollTimeout(now), p.heldDeadline());
    this.timer.armAt(t === Infinity ? undefined : Math.max(t, now));
  }

  private anyActive(now: number): boolean {
    for (const p of this.peers.values()) if (now - p.core.lastSendAt < MAGICSOCK.SESSION_ACTIVE_TIMEOUT_MS) return true;
    return false;
  }

  private restun(reason: string): void {
    this.counters.inc('restun');
    void this.endpoints
      .refresh(() => this.clock.now())
      .then((changed) => {
        if (this.closed) return;
        const now = this.clock.now();
        const span = MAGICSOCK.RESTUN_MAX_MS - MAGICSOCK.RESTUN_MIN_MS;
        this.nextRestunAt = now + MAGICSOCK.RESTUN_MIN_MS + randomFloat(this.rng) * span;
        if (changed && reason !== 'startup') {
          // New endpoints: tell every peer that is not on a trusted direct path.
          for (const p of this.peers.values()) if (!p.core.trustedBest(now)) this.sendCallMeMaybeNow(p);
        }
        this.rearm();
      });
  }

  private onUdpError(err: NodeJS.ErrnoException): void {
    if (this.closed) return;
    this.counters.inc('send-errors');
    this.maybeRebindOnError(err);
  }

  private maybeRebindOnError(err: NodeJS.ErrnoException): void {
    const now = this.clock.now();
    const fatal =
      err.code === 'EPIPE' ||
      err.code === 'ENOTCONN' ||
      err.code === 'EPERM' ||
      err.code === 'EBADF' ||
      err.code === 'ERR_SOCKET_DGRAM_NOT_RUNNING';
    if (!fatal || now - this.lastRebindAt < MAGICSOCK.REBIND_THROTTLE_MS) return;
    void this.rebind(`send-error:${err.code}`).catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new MeshsockError(ErrorCode.CLOSED, 'socket is closed');
  }
}

function portMappingStatus(pm: PortMapper): { phase: string; protocol?: string; external?: string; reason?: string } {
  const st = pm.status();
  const m = pm.mapping();
  return {
    phase: st.phase,
    ...(m ? { protocol: m.protocol, external: formatAddrPort(m.external) } : {}),
    ...(st.disabledReason ? { reason: st.disabledReason } : {}),
  };
}
