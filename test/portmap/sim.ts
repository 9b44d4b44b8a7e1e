/**
 * Discrete-event simulation of a PortmapCore talking to a FakeGateway: fake time, no sockets. Every datagram and
 * HTTP request the core emits is answered by the gateway after `rttMs`; the core's timers run when due.
 */
import type { AddrPort } from '../../src/internal/addr.js';
import type { RandomSource } from '../../src/internal/clock.js';
import { PortmapCore, type PortmapCoreOptions } from '../../src/portmap/core.js';
import type { MappingChangeReason, PortMapping, PortmapAction } from '../../src/portmap/types.js';
import { FakeGateway, type FakeGatewayOptions } from './fake-gateway.js';

/** A deterministic RandomSource: bytes from a simple counter-based generator. */
export function seededRng(seed = 1): RandomSource {
  let x = seed >>> 0 || 1;
  return (n) => {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      out[i] = x & 0xff;
    }
    return out;
  };
}

export interface MappingEvent {
  at: number;
  mapping: PortMapping | undefined;
  previous: PortMapping | undefined;
  reason: MappingChangeReason;
}

export class Sim {
  now = 1_000_000;
  readonly start: number;
  readonly gw: FakeGateway;
  readonly core: PortmapCore;
  readonly local = '192.168.1.10';
  readonly actions: Array<PortmapAction & { at: number }> = [];
  readonly mappings: MappingEvent[] = [];
  readonly events: Array<{ at: number; event: string; detail: Record<string, unknown> }> = [];
  closedAt: number | undefined;
  rttMs = 1;
  /** Datagrams sent anywhere but the gateway or the SSDP group (must stay empty). */
  readonly strays: AddrPort[] = [];
  private queue: Array<{ at: number; seq: number; fn: () => PortmapAction[] }> = [];
  private seq = 0;

  constructor(o: { gw?: Partial<FakeGatewayOptions>; core?: Partial<PortmapCoreOptions>; seed?: number } = {}) {
    this.start = this.now;
    this.gw = new FakeGateway({ ip: '192.168.1.1', ...o.gw }, this.now);
    this.core = new PortmapCore({
      internalPort: 41641,
      gateway: this.gw.ip,
      localAddress: this.local,
      rng: seededRng(o.seed ?? 7),
      ...o.core,
    });
  }

  /** Feeds actions from the core: records them and schedules the gateway's answers. */
  run(actions: PortmapAction[]): void {
    for (const a of actions) {
      this.actions.push({ ...a, at: this.now });
      if (a.kind === 'mapping')
        this.mappings.push({ at: this.now, mapping: a.mapping, previous: a.previous, reason: a.reason });
      else if (a.kind === 'event') this.events.push({ at: this.now, event: a.event, detail: { ...a.detail } });
      else if (a.kind === 'closed') this.closedAt = this.now;
      else if (a.kind === 'send') this.onSend(a);
      else if (a.kind === 'http') this.onHttp(a);
    }
  }

  private later(ms: number, fn: () => PortmapAction[]): void {
    this.queue.push({ at: this.now + ms, seq: this.seq++, fn });
  }

  private onSend(a: Extract<PortmapAction, { kind: 'send' }>): void {
    const from = { ip: this.local, port: 50000 };
    if (a.socket === 'pmp') {
      if (a.to.ip !== this.gw.ip || a.to.port !== 5351) return void this.strays.push(a.to);
      const ans = this.gw.on5351(a.bytes, from, this.now);
      if (ans)
        this.later(this.rttMs, () => this.core.handleDatagram('pmp', ans, { ip: this.gw.ip, port: 5351 }, this.now));
      return;
    }
    if ((a.to.ip !== this.gw.ip && a.to.ip !== '239.255.255.250') || a.to.port !== 1900)
      return void this.strays.push(a.to);
    for (const ans of this.gw.onSsdp(a.bytes))
      this.later(this.rttMs, () => this.core.handleDatagram('ssdp', ans, { ip: this.gw.ip, port: 1900 }, this.now));
  }

  private onHttp(a: Extract<PortmapAction, { kind: 'http' }>): void {
    const u = new URL(a.url);
    if (u.hostname !== this.gw.ip) {
      this.strays.push({ ip: u.hostname, port: Number(u.port) });
      return this.later(1, () => this.core.handleHttp(a.id, { ok: false, error: 'refused' }, this.now));
    }
    if (this.gw.silent)
      return this.later(a.timeoutMs, () => this.core.handleHttp(a.id, { ok: false, error: 'timeout' }, this.now));
    const headers = Object.fromEntries(Object.entries(a.headers).map(([k, v]) => [k.toLowerCase(), v]));
    const res = this.gw.onHttp(a.method, u.pathname, headers, a.body, this.local);
    this.later(this.rttMs, () => this.core.handleHttp(a.id, { ok: true, ...res }, this.now));
  }

  /** Runs answers and timers due within `ms`. */
  advance(ms: number): this {
    const end = this.now + ms;
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error('simulation does not settle');
      this.queue.sort((x, y) => x.at - y.at || x.seq - y.seq);
      const q = this.queue[0];
      const t = this.core.pollTimeout() ?? Infinity;
      const next = Math.min(q?.at ?? Infinity, t);
      if (next > end) break;
      this.now = Math.max(this.now, next);
      if (q && q.at <= t) {
        this.queue.shift();
        this.run(q.fn());
      } else this.run(this.core.handleTimeout(this.now));
    }
    this.now = end;
    return this;
  }

  startCore(): this {
    this.run(this.core.start(this.now));
    return this;
  }

  close(): this {
    this.run(this.core.close(this.now));
    return this;
  }

  /** Milliseconds since the simulation started. */
  sinceStart(at: number): number {
    return at - this.start;
  }

  sent(kind: 'send' | 'http'): Array<PortmapAction & { at: number }> {
    return this.actions.filter((a) => a.kind === kind);
  }
}
