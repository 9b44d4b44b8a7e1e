/**
 * The per-peer endpoint core (src/magicsock/endpoint.ts) driven through a table of scenarios on simulated time.
 *
 * `Sim` plays the driver: it feeds inputs at chosen times, runs `onTimeout` exactly when `pollTimeout` asks (as the
 * driver's single timer does), answers pings from "responders" after a chosen latency, and records every action
 * with its time. Scenarios assert the exact actions and state against tailscale-protocols.md §3.3–3.5 and the
 * meshsock additions in constants.ts. Nothing sleeps; time only moves through `Sim.at(t)`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatAddrPort, parseAddrPort, type AddrPort } from '../../src/internal/addr.js';
import { toHex } from '../../src/internal/bytes.js';
import { MAGICSOCK } from '../../src/magicsock/constants.js';
import {
  CandidateSource,
  NotDirectReason,
  PeerEndpoint,
  type EndpointAction,
  type Route,
} from '../../src/magicsock/endpoint.js';

const T0 = 1_000_000;
const A = '203.0.113.1:41641'; // public
const B = '10.0.0.2:41641'; // private (RFC 1918)
const C = '203.0.113.3:41641'; // public
const P = '198.51.100.9:5000'; // a peer-reflexive source
const OBS = '198.51.100.200:40000'; // how the peer sees us

/** Deterministic RandomSource: a counter, so every TxID is unique and the run is reproducible. */
function counterRng(): (n: number) => Uint8Array {
  let next = 0;
  return (n) => {
    const b = new Uint8Array(n);
    let v = ++next;
    for (let i = n - 1; i >= 0 && v > 0; i--, v = Math.floor(v / 256)) b[i] = v & 0xff;
    return b;
  };
}

function fmtAction(a: EndpointAction): string {
  switch (a.kind) {
    case 'ping':
      return `ping ${formatAddrPort(a.to)} ${a.purpose}`;
    case 'callMeMaybe':
      return 'cmm';
    case 'bestChanged':
      return `best ${a.best ? a.best.key : 'none'} ${a.reason}`;
    case 'learnAddr':
      return `learn ${a.key}`;
    case 'forgetAddr':
      return `forget ${a.key}`;
    case 'observedAddr':
      return `observed ${formatAddrPort(a.addr)}`;
  }
}

function fmtRoute(r: Route): string {
  const parts: string[] = [];
  if (r.udp) parts.push(`udp:${formatAddrPort(r.udp)}`);
  if (r.derp) parts.push('derp');
  return parts.join('+') || 'none';
}

interface ScheduledPong {
  at: number;
  txHex: string;
  from: AddrPort;
}

/** The simulated driver. Times (`t`, log entries) are milliseconds since the scenario started. */
class Sim {
  readonly ep = new PeerEndpoint(counterRng());
  t = 0;
  /** Every action with its time: "1400 ping 203.0.113.1:41641 discovery". */
  readonly log: Array<{ t: number; a: string }> = [];
  /** TxIDs of pings sent to each address, oldest first. */
  readonly txTo = new Map<string, string[]>();
  private readonly responders = new Map<string, number>();
  private scheduled: ScheduledPong[] = [];

  constructor(opts: { discoKey?: boolean } = {}) {
    this.ep.hasDiscoKey = opts.discoKey ?? true;
  }

  get now(): number {
    return T0 + this.t;
  }

  /** Runs the driver loop (timers and scheduled pongs, in time order) up to `t`, then sets the time to `t`. */
  at(t: number): this {
    if (t < this.t) throw new Error(`time goes forward only (${t} < ${this.t})`);
    for (let guard = 0; ; guard++) {
      if (guard > 200_000) throw new Error('runaway driver loop');
      const timerAt = this.ep.pollTimeout(this.now);
      const pong = this.scheduled[0];
      const pongAt = pong ? T0 + pong.at : Infinity;
      const next = Math.min(timerAt, pongAt);
      if (next > T0 + t) break;
      this.t = Math.max(this.t, next - T0);
      if (pong && pongAt <= timerAt) {
        this.scheduled.shift();
        const r = this.ep.onPong(pong.txHex, pong.from, parseAddrPort(OBS), this.now);
        if (r) this.record(r);
        continue;
      }
      this.record(this.ep.onTimeout(this.now));
      // The driver re-arms at pollTimeout(); a deadline at or before now after onTimeout would spin forever.
      const again = this.ep.pollTimeout(this.now);
      if (again <= this.now) throw new Error(`busy loop: pollTimeout ${again - T0} <= now ${this.t} after onTimeout`);
    }
    this.t = t;
    return this;
  }

  /** Pings to `addr` are answered after `latencyMs` (undefined: no longer answered). */
  respond(addr: string, latencyMs: number | undefined): this {
    if (latencyMs === undefined) {
      this.responders.delete(addr);
      this.scheduled = this.scheduled.filter((s) => formatAddrPort(s.from) !== addr);
    } else this.responders.set(addr, latencyMs);
    return this;
  }

  record(actions: EndpointAction[]): string[] {
    const out = actions.map(fmtAction);
    for (const a of actions) {
      if (a.kind !== 'ping') continue;
      const key = formatAddrPort(a.to);
      const txHex = toHex(a.txId);
      const list = this.txTo.get(key) ?? [];
      list.push(txHex);
      this.txTo.set(key, list);
      const lat = this.responders.get(key);
      if (lat !== undefined) {
        this.scheduled.push({ at: this.t + lat, txHex, from: a.to });
        this.scheduled.sort((x, y) => x.at - y.at);
      }
    }
    for (const s of out) this.log.push({ t: this.t, a: s });
    return out;
  }

  hints(...addrs: string[]): string[] {
    return this.record(this.ep.addHints(addrs.map(parseAddrPort), this.now));
  }
  start(): string[] {
    return this.record(this.ep.startDiscovery(this.now));
  }
  send(): { route: string; actions: string[] } {
    const { route, actions } = this.ep.onSend(this.now);
    return { route: fmtRoute(route), actions: this.record(actions) };
  }
  cmm(addrs: string[], peerKnowsUs = true): string[] {
    return this.record(this.ep.onCallMeMaybe(addrs.map(parseAddrPort), this.now, peerKnowsUs));
  }
  ping(from: string): string[] {
    return this.record(this.ep.onPing(parseAddrPort(from), this.now));
  }
  /** Answers the latest ping sent to `addr` (or the given TxID) as if it came from `from`. undefined = ignored. */
  pong(addr: string, opts: { txHex?: string; from?: string } = {}): string[] | undefined {
    const txHex = opts.txHex ?? this.txTo.get(addr)?.at(-1);
    if (txHex === undefined) throw new Error(`no ping to ${addr} to answer`);
    const r = this.ep.onPong(txHex, parseAddrPort(opts.from ?? addr), parseAddrPort(OBS), this.now);
    return r && this.record(r);
  }
  reason(): NotDirectReason | undefined {
    return this.ep.notDirectReason(this.now);
  }
  /** Sends one datagram every `everyMs` from now until `until` (keeps the session active), returning the routes. */
  sendEvery(everyMs: number, until: number): string[] {
    const routes: string[] = [];
    for (let t = this.t; t <= until; t += everyMs) {
      this.at(t);
      routes.push(this.send().route);
    }
    return routes;
  }
  times(action: string, from = 0): number[] {
    return this.log.filter((e) => e.a === action && e.t >= from).map((e) => e.t);
  }
  actionsAt(t: number): string[] {
    return this.log.filter((e) => e.t === t).map((e) => e.a);
  }
}

/** A peer with candidate A whose first ping is answered after `latency` ms: a trusted direct path at `latency`. */
function directAt(latency = 20, ...more: string[]): Sim {
  const s = new Sim();
  s.hints(A, ...more);
  s.respond(A, latency);
  s.start();
  s.at(latency);
  expect(s.ep.best?.key).toBe(A);
  return s;
}

interface Scenario {
  name: string;
  run: () => void;
}

const scenarios: Scenario[] = [
  {
    name: 'first contact, peer disco key unknown: CallMeMaybe only, resent every 1 s for 45 s, never a ping',
    run() {
      const s = new Sim({ discoKey: false });
      expect(s.hints(A)).toEqual([`learn ${A}`]);
      expect(s.start()).toEqual(['cmm']);
      expect(s.reason()).toBe(NotDirectReason.NO_DISCO_KEY);
      s.at(60_000);
      const cmms = s.times('cmm');
      expect(cmms.slice(0, 4)).toEqual([0, 1000, 2000, 3000]);
      expect(cmms).toHaveLength(45);
      expect(cmms.at(-1)).toBe(44_000);
      expect(s.log.filter((e) => e.a.startsWith('ping'))).toEqual([]);
      expect(s.ep.pollTimeout(s.now)).toBe(Infinity);
    },
  },
  {
    name: 'first contact, disco key known: pings every candidate + CallMeMaybe; retries at 0.2/0.6/1.4/3 s then every 5 s',
    run() {
      const s = new Sim();
      expect(s.hints(A, B)).toEqual([`learn ${A}`, `learn ${B}`]);
      expect(s.start()).toEqual([`ping ${A} discovery`, `ping ${B} discovery`, 'cmm']);
      s.at(1000);
      expect(s.reason()).toBe(NotDirectReason.DISCOVERING);
      s.at(20_000);
      const schedule = [0, 200, 600, 1400, 3000, 8000, 13_000, 18_000];
      expect(s.times(`ping ${A} discovery`)).toEqual(schedule);
      expect(s.times(`ping ${B} discovery`)).toEqual(schedule);
      // CallMeMaybe goes with the pings, at most every DISCO_PING_INTERVAL_MS.
      expect(s.times('cmm')).toEqual([0, 8000, 13_000, 18_000]);
      expect(s.reason()).toBe(NotDirectReason.NO_PONG);
      expect(s.send().route).toBe('derp');
    },
  },
  {
    name: 'disco key known but no candidates: CallMeMaybe every 5 s, reason no-candidates',
    run() {
      const s = new Sim();
      expect(s.start()).toEqual(['cmm']);
      s.at(12_000);
      expect(s.times('cmm')).toEqual([0, 5000, 10_000]);
      expect(s.reason()).toBe(NotDirectReason.NO_CANDIDATES);
      expect(s.send().route).toBe('derp');
    },
  },
  {
    name: 'simultaneous open, peer does not know us: lastPing reset, every candidate pinged at once, our CallMeMaybe back at once',
    run() {
      const s = new Sim();
      s.hints(A);
      s.start(); // ping A + cmm at 0
      s.at(150);
      expect(s.cmm([A, B], false)).toEqual([`learn ${B}`, 'cmm', `ping ${A} discovery`, `ping ${B} discovery`]);
      // A second one 50 ms later: pings again at once (no 5 s limit), but our reply is bounded by 100 ms.
      s.at(200);
      expect(s.cmm([A, B], false)).toEqual([`ping ${A} discovery`, `ping ${B} discovery`]);
      // The fast-retry schedule restarts from the CallMeMaybe.
      s.at(1000);
      expect(s.times(`ping ${A} discovery`)).toEqual([0, 150, 200, 400, 800]);
    },
  },
  {
    name: 'simultaneous open, peer knows us: every candidate pinged at once, our CallMeMaybe reply rate-limited to one per 2 s',
    run() {
      const s = new Sim();
      s.hints(A);
      s.start(); // cmm at 0
      s.at(1000);
      expect(s.cmm([A])).toEqual([`ping ${A} discovery`]);
      s.at(2500);
      expect(s.cmm([A])).toEqual(['cmm', `ping ${A} discovery`]);
      s.at(3000);
      expect(s.cmm([A])).toEqual([`ping ${A} discovery`]);
    },
  },
  {
    name: 'CallMeMaybe: unusable endpoints ignored; endpoints no longer listed forgotten unless hinted',
    run() {
      const s = new Sim();
      s.hints(A);
      const out = s.cmm([A, B, C, '0.0.0.0:41641', '10.0.0.9:0', '[fe80::1]:41641', '[::]:1'], false);
      expect(out.filter((a) => a.startsWith('learn'))).toEqual([`learn ${B}`, `learn ${C}`]);
      expect([...s.ep.candidates.keys()].sort()).toEqual([A, B, C].sort());
      expect(s.ep.candidates.get(A)!.sources).toBe(CandidateSource.HINT | CandidateSource.CALL_ME_MAYBE);
      s.at(3000);
      expect(s.cmm([A])).toEqual([`forget ${B}`, `forget ${C}`, 'cmm', `ping ${A} discovery`]);
      s.at(6000);
      expect(s.cmm([]).filter((a) => a.startsWith('forget'))).toEqual([]);
      expect([...s.ep.candidates.keys()]).toEqual([A]);
      expect(s.ep.candidates.get(A)!.sources).toBe(CandidateSource.HINT);
    },
  },
  {
    name: 'pong → best path, trusted for 6.5 s: UDP only while trusted, UDP + DERP after',
    run() {
      const s = new Sim();
      s.hints(A);
      s.start();
      s.at(20);
      expect(s.pong(A)).toEqual([`observed ${OBS}`, `best ${A} pong`]);
      expect(s.ep.best).toMatchObject({ key: A, latencyMs: 20, trustUntil: T0 + 20 + MAGICSOCK.TRUST_UDP_ADDR_MS });
      expect(s.ep.candidates.get(A)!.latencyMs).toBe(20);
      s.at(25);
      expect(s.send()).toEqual({ route: `udp:${A}`, actions: [] });
      expect(s.reason()).toBeUndefined();
      // The first heartbeat (3 s after the pong: no data in the last second) goes unanswered; after
      // HEARTBEAT_LOSS_MS trust ends early (meshsock: sends go over DERP too) and the heartbeat is asked again.
      s.at(3269);
      expect(s.send().route).toBe(`udp:${A}`);
      s.at(3270);
      expect(s.send().route).toBe('derp'); // suspect: DERP alone until a pong

      expect(s.reason()).toBe(NotDirectReason.PATH_LOST);
      expect(s.times(`ping ${A} heartbeat`)).toEqual([3020, 3270]);
    },
  },
  {
    name: 'heartbeat every 3 s while active keeps the path trusted; UDP only throughout',
    run() {
      const s = directAt(20);
      const routes = s.sendEvery(1000, 30_000);
      expect(new Set(routes)).toEqual(new Set([`udp:${A}`]));
      expect(s.times(`ping ${A} heartbeat`)).toEqual([
        3020, 6020, 9020, 12_020, 15_020, 18_020, 21_020, 24_020, 27_020,
      ]);
      expect(s.reason()).toBeUndefined();
    },
  },
  {
    name: 'full re-probe of the other candidates every 60 s from the heartbeat, skipped when latency <= 5 ms',
    run() {
      const slow = directAt(20, C);
      slow.sendEvery(1000, 70_000);
      // C never answers: pinged at discovery start, at the first heartbeat, then once a minute.
      expect(slow.times(`ping ${C} discovery`)).toEqual([0, 3020, 63_020]);
      const fast = directAt(3, C);
      fast.sendEvery(1000, 70_000);
      expect(fast.times(`ping ${C} discovery`)).toEqual([0]);
    },
  },
  {
    name: 'better path: ~1 % faster does not switch, 3 % faster does, a private path beats a faster public one',
    run() {
      const cases: Array<[string, number, boolean]> = [
        [C, 99, false],
        [C, 97, true],
        [B, 110, true], // private +20 beats 100 vs 110 (9 points)
        [B, 130, false], // 23 points for the faster public path beat the private bonus
      ];
      for (const [addr, latency, switches] of cases) {
        const s = directAt(100);
        s.at(150);
        expect(s.cmm([A, addr])).toEqual([`learn ${addr}`, `ping ${addr} discovery`]); // trusted best not re-pinged
        s.at(150 + latency);
        const out = s.pong(addr);
        expect(out, `${addr} at ${latency} ms`).toEqual(
          switches ? [`observed ${OBS}`, `best ${addr} better-path`] : [`observed ${OBS}`],
        );
        expect(s.ep.best!.key).toBe(switches ? addr : A);
      }
    },
  },
  {
    name: 'an untrusted best path is replaced by any path that answers, even a slower one',
    run() {
      const s = directAt(100, C);
      s.respond(A, undefined);
      s.respond(C, 300); // C answers, three times slower than A did
      s.at(150);
      s.send();
      // A's heartbeat at 3100 goes unanswered, so trust ends at 3500; C's next answer then replaces A.
      s.sendEvery(100, 9000);
      expect(s.ep.best!.key).toBe(C);
      expect(s.log.find((e) => e.a.startsWith(`best ${C}`))).toBeDefined();
    },
  },
  {
    name: 'path dies: heartbeats unanswered, trust lapses at 6.5 s (UDP + DERP), ping timeout clears it (DERP only), discovery keeps probing',
    run() {
      const s = directAt(20);
      s.respond(A, undefined);
      const routes = new Map<number, string>();
      for (let t = 25; t <= 12_025; t += 500) {
        s.at(t);
        routes.set(t, s.send().route);
      }
      // Data flows, so heartbeats come every second; the first unanswered one ends trust 250 ms later.
      expect(s.times(`ping ${A} heartbeat`)).toEqual([3020, 3270, 4020, 5020, 6020, 7020]);
      expect(routes.get(3025)).toBe(`udp:${A}`);
      expect(routes.get(3525)).toBe('derp'); // trust ended at 3270: the path is suspect, DERP alone
      expect(routes.get(7525)).toBe('derp');
      // The heartbeat of 3020 times out at 8020 after trust lapsed: the path is dropped.
      expect(s.log.find((e) => e.a.startsWith('best none'))).toEqual({ t: 8020, a: 'best none ping-timeout' });
      expect(routes.get(8025)).toBe('derp');
      expect(s.reason()).toBe(NotDirectReason.PATH_LOST);
      // Rediscovery: the old candidate is pinged again 5 s after its last ping (the heartbeat of 7020;
      // Tailscale's discoPingInterval), with a CallMeMaybe.
      expect(s.times(`ping ${A} discovery`, 100)).toEqual([12_020]);
      expect(s.times('cmm', 100)).toEqual([12_020]);
      // The path comes back: the next retry is answered and the path is direct again.
      s.respond(A, 20);
      s.at(12_500);
      expect(s.ep.best?.key).toBe(A);
      expect(s.send().route).toBe(`udp:${A}`);
    },
  },
  {
    name: 'idle: 45 s without sends stops heartbeats, prunes runtime-learned candidates, reason idle; the next send rediscovers at once',
    run() {
      const s = directAt(5);
      s.at(25);
      s.send(); // the only send: active until 45 025
      s.at(100);
      expect(s.ping(P)).toEqual([`learn ${P}`]); // trusted path: no reciprocal ping
      s.at(60_000);
      const hb = s.times(`ping ${A} heartbeat`);
      expect(hb.at(-1)).toBe(45_005); // 45 005 − 25 < 45 s: still active
      expect(hb).toHaveLength(15);
      expect(s.log.find((e) => e.a === `forget ${P}`)).toEqual({ t: 48_005, a: `forget ${P}` });
      expect([...s.ep.candidates.keys()]).toEqual([A]);
      expect(s.reason()).toBe(NotDirectReason.IDLE);
      expect(s.ep.pollTimeout(s.now)).toBe(Infinity);
      // Next send: UDP to the old path + DERP, and the old path is pinged at once (its last ping was > 5 s ago).
      const { route, actions } = s.send();
      expect(route).toBe(`udp:${A}+derp`);
      expect(actions).toEqual([`ping ${A} discovery`, 'cmm']);
      s.at(60_010);
      expect(s.send().route).toBe(`udp:${A}`);
    },
  },
  {
    name: 'a candidate the peer keeps listing in its CallMeMaybe is not pruned as unheard',
    run() {
      const s = directAt(5);
      s.at(10);
      s.send();
      s.cmm([A, C]);
      s.at(40_000);
      s.cmm([A, C]);
      s.at(60_000);
      s.record(s.ep.onTimeout(s.now)); // a driver wake-up while idle: C was listed 20 s ago, so it stays
      expect([...s.ep.candidates.keys()].sort()).toEqual([A, C].sort());
      s.at(90_000);
      s.record(s.ep.onTimeout(s.now)); // 50 s after the last listing: pruned
      expect([...s.ep.candidates.keys()]).toEqual([A]);
    },
  },
  {
    name: 'rebind: reset clears the path and every stat, keeps the addresses, pings everything at once',
    run() {
      const s = directAt(20, B);
      s.respond(A, undefined);
      s.at(1000);
      const pending = s.txTo.get(B)!.at(-1)!;
      expect(s.record(s.ep.reset(s.now))).toEqual(['best none rebind', `ping ${A} discovery`, `ping ${B} discovery`]);
      expect([...s.ep.candidates.keys()]).toEqual([A, B]);
      for (const c of s.ep.candidates.values()) {
        expect(c.latencyMs).toBeUndefined();
        expect(c.recentLatencies).toEqual([]);
        expect(c.lastPong).toBe(-Infinity);
      }
      expect(s.ep.best).toBeUndefined();
      expect(s.pong(B, { txHex: pending })).toBeUndefined(); // a ping from before the rebind proves nothing
      expect(s.reason()).toBe(NotDirectReason.PATH_LOST);
      s.at(6000);
      expect(s.record(s.ep.reset(s.now))).toContain('cmm');
    },
  },
  {
    name: 'pongs that match nothing change nothing: unknown TxID, wrong source, replay, after the ping timed out',
    run() {
      const s = new Sim();
      s.hints(A, B);
      s.start();
      const txA = s.txTo.get(A)![0]!;
      const txB = s.txTo.get(B)![0]!;
      s.at(10);
      expect(s.pong(A, { txHex: 'ff'.repeat(12) })).toBeUndefined();
      expect(s.pong(A, { txHex: txA, from: B })).toBeUndefined();
      expect(s.pong(A, { txHex: txA, from: '203.0.113.1:41642' })).toBeUndefined();
      expect(s.ep.best).toBeUndefined();
      expect(s.pong(A, { txHex: txA })).toEqual([`observed ${OBS}`, `best ${A} pong`]);
      expect(s.pong(A, { txHex: txA })).toBeUndefined(); // replay
      s.at(5000); // B's first ping times out
      expect(s.pong(B, { txHex: txB })).toBeUndefined();
      expect(s.ep.best!.key).toBe(A);
    },
  },
  {
    name: 'candidate cap: 1,000 CallMeMaybe endpoints or ping sources never exceed MAX_CANDIDATES; hints and the best path stay',
    run() {
      const s = directAt(20, B);
      const many = Array.from({ length: 1000 }, (_, i) => `198.18.${i >> 8}.${i & 255}:4000`);
      const out = s.cmm(many);
      expect(s.ep.candidates.size).toBeLessThanOrEqual(MAGICSOCK.MAX_CANDIDATES);
      expect(s.ep.candidates.has(A) && s.ep.candidates.has(B)).toBe(true);
      expect(s.ep.best!.key).toBe(A);
      expect(out.filter((a) => a.startsWith('ping')).length).toBeLessThanOrEqual(MAGICSOCK.MAX_CANDIDATES);
      const learned = out.filter((a) => a.startsWith('learn')).length;
      const forgotten = out.filter((a) => a.startsWith('forget')).length;
      expect(learned - forgotten).toBe(s.ep.candidates.size - 2);
      for (let i = 0; i < 1000; i++) s.ping(`198.19.${i >> 8}.${i & 255}:5000`);
      expect(s.ep.candidates.size).toBeLessThanOrEqual(MAGICSOCK.MAX_CANDIDATES);
      expect(s.ep.best!.key).toBe(A);
    },
  },
  {
    name: 'reciprocal ping: a ping from an unanswered source gets our own ping while no path is trusted, at most every RECIPROCAL_PING_MIN_MS',
    run() {
      const R = MAGICSOCK.RECIPROCAL_PING_MIN_MS;
      const s = new Sim();
      expect(s.ping(P)).toEqual([`learn ${P}`, `ping ${P} discovery`]);
      expect(s.ep.candidates.get(P)!.sources).toBe(CandidateSource.PING_SOURCE);
      s.at(R - 1);
      expect(s.ping(P)).toEqual([]);
      s.at(R);
      expect(s.ping(P)).toEqual([`ping ${P} discovery`]);
      const t = directAt(20);
      expect(t.ping(P)).toEqual([`learn ${P}`]); // a trusted path: no reciprocal ping
    },
  },
  {
    name: 'data over DERP while a direct path is trusted: distrust it and heartbeat at once, at most once per second',
    run() {
      const s = directAt(20);
      s.at(500);
      s.send();
      expect(s.record(s.ep.onRecv(s.now, true) ?? [])).toEqual([`ping ${A} heartbeat`]);
      // The path is suspect until a pong: DERP alone, so the receiver never sees a twin.
      expect(s.send().route).toBe('derp');
      s.at(900);
      expect(s.ep.onRecv(s.now, true)).toBeUndefined();
      expect(s.ep.onRecv(s.now, false)).toBeUndefined();
    },
  },
  {
    name: 'send error on the best path: path and its stats cleared, discovery restarts',
    run() {
      const s = directAt(20, B);
      s.respond(A, undefined);
      s.at(7000);
      // Rediscovery pings every candidate whose last ping is over 5 s old — here both (A's was at 0).
      expect(s.record(s.ep.onSendError(A, s.now))).toEqual([
        'best none send-error',
        `ping ${A} discovery`,
        `ping ${B} discovery`,
        'cmm',
      ]);
      expect(s.ep.candidates.get(A)!.latencyMs).toBeUndefined();
      expect(s.send().route).toBe('derp');
    },
  },
];

describe('PeerEndpoint scenarios', () => {
  it.each(scenarios)('$name', ({ run }) => run());
});

describe('notDirectReason for each state', () => {
  const table: Array<[string, () => Sim, NotDirectReason | undefined]> = [
    ['no disco key', () => new Sim({ discoKey: false }), NotDirectReason.NO_DISCO_KEY],
    ['no candidates', () => new Sim(), NotDirectReason.NO_CANDIDATES],
    [
      'pings out, none answered yet',
      () => ((s) => (s.hints(A), s.start(), s.at(500)))(new Sim()),
      NotDirectReason.DISCOVERING,
    ],
    [
      'every retry unanswered',
      () => ((s) => (s.hints(A), s.start(), s.send(), s.at(9000)))(new Sim()),
      NotDirectReason.NO_PONG,
    ],
    ['trusted direct path', () => directAt(20), undefined],
    [
      'direct path lost',
      () => ((s) => (s.respond(A, undefined), s.sendEvery(1000, 9000), s))(directAt(20)),
      NotDirectReason.PATH_LOST,
    ],
    ['idle session', () => ((s) => (s.send(), s.at(100_000)))(directAt(20)), NotDirectReason.IDLE],
  ];
  it.each(table)('%s → %s', (_name, setup, reason) => {
    const s = setup();
    expect(s.reason()).toBe(reason);
    expect(s.ep.trustedBest(s.now) === undefined).toBe(reason !== undefined);
  });
});

describe('PeerEndpoint invariants under random inputs (fast-check)', () => {
  const addrs = [A, B, C, P, '[2001:db8::1]:41641', '127.0.0.1:9'];
  const op = fc.oneof(
    fc.record({ k: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 8000 }) }),
    fc.record({ k: fc.constant('send' as const) }),
    fc.record({ k: fc.constant('hints' as const), a: fc.subarray(addrs) }),
    fc.record({ k: fc.constant('cmm' as const), a: fc.subarray(addrs), knows: fc.boolean() }),
    fc.record({ k: fc.constant('ping' as const), a: fc.constantFrom(...addrs) }),
    fc.record({ k: fc.constant('pong' as const), a: fc.constantFrom(...addrs), from: fc.constantFrom(...addrs) }),
    fc.record({
      k: fc.constant('respond' as const),
      a: fc.constantFrom(...addrs),
      lat: fc.option(fc.integer({ min: 0, max: 400 })),
    }),
    fc.record({ k: fc.constant('recvDerp' as const) }),
    fc.record({ k: fc.constant('reset' as const) }),
    fc.record({ k: fc.constant('sendError' as const), a: fc.constantFrom(...addrs) }),
    fc.record({ k: fc.constant('learnKey' as const) }),
  );

  it('never throws, never spins, respects the cap, and routes UDP-only exactly while trusted', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.array(op, { maxLength: 60 }), (key, ops) => {
        const s = new Sim({ discoKey: key });
        s.start();
        for (const o of ops) {
          switch (o.k) {
            case 'advance':
              s.at(s.t + o.ms); // throws on a busy loop
              break;
            case 'send': {
              const trusted = s.ep.trustedBest(s.now);
              const { route } = s.send();
              expect(route === `udp:${trusted?.key}`).toBe(trusted !== undefined);
              if (!trusted) expect(route.endsWith('derp')).toBe(true);
              break;
            }
            case 'hints':
              s.hints(...o.a);
              break;
            case 'cmm':
              s.cmm(o.a, o.knows);
              break;
            case 'ping': // the driver calls onPing only after opening the box with the peer's disco key
              if (s.ep.hasDiscoKey) s.ping(o.a);
              break;
            case 'pong':
              if (s.ep.hasDiscoKey && s.txTo.get(o.a)?.length) s.pong(o.a, { from: o.from });
              break;
            case 'respond':
              s.respond(o.a, o.lat ?? undefined);
              break;
            case 'recvDerp':
              s.record(s.ep.onRecv(s.now, true) ?? []);
              break;
            case 'reset':
              s.record(s.ep.reset(s.now));
              break;
            case 'sendError':
              s.record(s.ep.onSendError(o.a, s.now));
              break;
            case 'learnKey':
              s.ep.hasDiscoKey = true;
              s.record(s.ep.startDiscovery(s.now));
              break;
          }
          expect(s.ep.candidates.size).toBeLessThanOrEqual(MAGICSOCK.MAX_CANDIDATES);
          if (s.ep.best) expect(s.ep.candidates.has(s.ep.best.key)).toBe(true);
          if (!s.ep.hasDiscoKey) expect(s.log.some((e) => e.a.startsWith('ping'))).toBe(false);
          const reason = s.reason();
          expect(reason === undefined).toBe(s.ep.trustedBest(s.now) !== undefined);
        }
      }),
      { numRuns: 300 },
    );
  });
});
