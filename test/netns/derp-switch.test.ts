/**
 * Issue 3 in the lab: two MagicSockets (nat-lab/peer.ts) behind `easy` NATs, the real DERP server (`meshsock derp`)
 * in the internet namespace, a 64-byte datagram every 20 ms each way. Direct UDP between the two sites is then
 * dropped in the internet (nft, forwarding only — STUN and DERP are untouched), lifted, and dropped again; both
 * peers must move to DERP, back to direct, and to DERP again, with no error surfaced.
 *
 * Every datagram carries its sequence number and send time, so each receiver reports exactly which datagrams never
 * arrived and when they were sent. A blocked path dies silently: until the socket stops trusting it, it has no way to
 * know, and what it sends there alone is lost *by the network*. While data flows, a heartbeat goes out every
 * HEARTBEAT_ACTIVE_INTERVAL_MS (1 s) and one unanswered for HEARTBEAT_LOSS_MS (250 ms; or 4 × the path's latency,
 * a few ms here) ends trust, after which every datagram goes over DERP and UDP together. So the detection window of
 * a block is [block, block + 1.25 s]: a datagram sent inside it may be lost, one sent outside it (including
 * everything around the lift, when DERP carries the traffic until a pong proves the direct path) must not be, and
 * delivery must never pause longer than the window. (Were heartbeats to fail, TRUST_UDP_ADDR_MS, 6.5 s, would be the
 * bound; the test holds the socket to the tighter one it claims.) The reported path moves to DERP later, when a ping
 * to the dead path times out after trust has ended — at the latest TRUST_UDP_ADDR_MS + HEARTBEAT_INTERVAL_MS +
 * PING_TIMEOUT_MS (14.5 s) after the block; traffic is already on DERP by then.
 *
 * The datagrams sent before both peers had a path at all (the receiver's DERP connection not up yet, so the DERP
 * server has nowhere to deliver them) are counted separately as "startup".
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { MAGICSOCK } from '../../src/magicsock/constants.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { blockUdp } from '../../nat-lab/faults.js';
import { leftovers } from '../../nat-lab/cleanup.js';
import { sleep } from '../../nat-lab/exec.js';
import { startRelay, startTraffic, type PeerStats, type Traffic } from '../../nat-lab/traffic.js';
import {
  attributeLoss,
  describeRuns,
  formatTimeline,
  lostDatagrams,
  peerTimeline,
  type LossWindow,
  type TimelineEntry,
} from '../../nat-lab/loss.js';
import type { PeerEvent } from '../../nat-lab/matrix.js';

const OUT = join(import.meta.dirname, '..', '..', 'nat-lab', 'out');
const INTERVAL_MS = 20;
/**
 * A silently dead direct path is trusted (and used alone) for at most this long after the block while data flows:
 * the next heartbeat within HEARTBEAT_ACTIVE_INTERVAL_MS, declared lost HEARTBEAT_LOSS_MS later.
 */
const DETECTION_WINDOW_MS = MAGICSOCK.HEARTBEAT_ACTIVE_INTERVAL_MS + MAGICSOCK.HEARTBEAT_LOSS_MS;
/** The reported path moves to DERP at most this long after the block (a heartbeat that times out). */
const PATH_SWITCH_BOUND_MS = MAGICSOCK.HEARTBEAT_INTERVAL_MS + MAGICSOCK.PING_TIMEOUT_MS + MAGICSOCK.TRUST_UDP_ADDR_MS;
/** Timers, the DERP hop and a loaded 2-core machine: added to every bound, never a tight threshold. */
const SLACK_MS = 1000;
/** Traffic on each path after a switch before the next change. */
const SETTLE_MS = 2000;

interface Phase {
  name: string;
  blocked: boolean;
  /** Just before the nft change, and once it was in place. */
  before: number;
  applied: number;
  /** Per peer: when its reported path changed, when the first datagram sent after the change arrived (and how). */
  pathAt: Array<number | null>;
  resumed: Array<{ afterMs: number; via: string } | null>;
  error?: string;
}

labSuite('DERP ⇄ direct switching under a silent block (issue 3; meshsock peer + meshsock derp)', () => {
  let lab: Lab | undefined;
  let traffic: Traffic;
  let t0 = 0;
  let directAt: number[] = [];
  const phases: Phase[] = [];
  const marks: TimelineEntry[] = [];
  let final: PeerStats[] = [];
  let events: PeerEvent[][] = [];
  let exitCodes: Array<number | null> = [];

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', profile: 'easy' },
        { name: 'b', profile: 'easy' },
      ],
    });
    await startRelay(lab);
    traffic = await startTraffic(lab, ['a1', 'b1'], { intervalMs: INTERVAL_MS });
    t0 = Date.now();
    directAt = (
      await traffic.waitAll((e) => e.event === 'path' && e.type === 'direct', { timeoutMs: 15_000, what: 'direct' })
    ).map((e) => e.at as number);
    await sleep(SETTLE_MS + 1000);
    for (const [name, blocked] of [
      ['block', true],
      ['lift', false],
      ['block again', true],
    ] as const) {
      const before = Date.now();
      await blockUdp(lab, 'a', 'b', blocked);
      const applied = Date.now();
      marks.push({
        at: applied,
        who: 'test',
        what: `${name.toUpperCase()}: direct UDP between the sites ${blocked ? 'dropped' : 'flows again'}`,
      });
      const phase: Phase = { name, blocked, before, applied, pathAt: [null, null], resumed: [null, null] };
      phases.push(phase);
      const n = await traffic.mark();
      const want = blocked ? 'derp' : 'direct';
      try {
        const paths = await traffic.waitAll(
          (e) => e.event === 'path' && e.type === want && (e.at as number) >= before,
          {
            timeoutMs: PATH_SWITCH_BOUND_MS + 10_000,
            what: `path ${want} after ${name}`,
          },
        );
        phase.pathAt = paths.map((e) => (e.at as number) - applied);
        const resumed = await traffic.waitAll(
          (e) => e.event === (blocked ? 'resumed' : 'resumed-direct') && e.n === n,
          { timeoutMs: 20_000, what: `delivery after ${name}` },
        );
        phase.resumed = resumed.map((e) => ({ afterMs: e.afterMs as number, via: blocked ? String(e.via) : 'direct' }));
      } catch (e) {
        phase.error = e instanceof Error ? e.message : String(e);
        break;
      }
      await sleep(SETTLE_MS);
    }
    final = await traffic.stop();
    events = traffic.peers.map((p) => p.events());
    exitCodes = await Promise.all(traffic.peers.map(async (p) => (await p.proc.exited).code));
  }, 180_000);

  afterAll(async () => {
    const prefix = lab?.prefix;
    await lab?.close();
    if (prefix) expect(leftovers(prefix)).toEqual([]);
  });

  /** Loss per direction: receiver i measures what peer 1-i sent. */
  function losses() {
    const hosts = ['a1', 'b1'];
    const startupEnd = Math.max(
      ...events.map((ev) => (ev.find((e) => e.event === 'first-datagram')?.at as number) ?? 0),
    );
    const windows: LossWindow[] = [
      { name: 'startup', from: 0, to: startupEnd },
      ...phases
        .filter((p) => p.blocked)
        .map((p) => ({ name: p.name, from: p.before, to: p.applied + DETECTION_WINDOW_MS + SLACK_MS })),
    ];
    return final.map((s, i) => {
      const lost = lostDatagrams(s.gaps, INTERVAL_MS);
      const { byWindow, outside } = attributeLoss(lost, windows);
      return {
        direction: `${hosts[1 - i]} → ${hosts[i]}`,
        sent: final[1 - i]!.sent,
        stats: s,
        lost,
        byWindow,
        outside,
      };
    });
  }

  it('prints the timeline and the loss accounting (and writes nat-lab/out/derp-switch.json)', () => {
    const timeline = [...marks, ...traffic.peers.flatMap((p, i) => peerTimeline(p.host, events[i]!))];
    const L = losses();
    const lines = [
      '',
      `DERP ⇄ direct, easy × easy, a datagram every ${INTERVAL_MS} ms each way; detection window ${DETECTION_WINDOW_MS} ms (HEARTBEAT_ACTIVE_INTERVAL_MS + HEARTBEAT_LOSS_MS) + ${SLACK_MS} ms slack`,
      formatTimeline(timeline, t0),
      '',
      'phase        path switched (a1, b1)        first datagram sent after the change arrived (a1, b1)',
      ...phases.map(
        (p) =>
          `${p.name.padEnd(12)} ${p.pathAt
            .map((x) => (x === null ? '—' : `+${x} ms`))
            .join(', ')
            .padEnd(29)} ${p.resumed
            .map((r) => (r ? `+${r.afterMs} ms via ${r.via}` : '—'))
            .join(', ')}${p.error ? `  ERROR ${p.error}` : ''}`,
      ),
      '',
      'loss (datagrams sent but never delivered):',
      ...L.flatMap((d) => [
        `  ${d.direction}: sent ${d.sent}, delivered ${d.stats.received}, lost ${d.lost.length}`,
        ...[...d.byWindow].map(
          ([w, l]) => `    ${`${w}:`.padEnd(13)} ${String(l.length).padStart(4)}  ${describeRuns(l, t0)}`,
        ),
        `    ${'elsewhere:'.padEnd(13)} ${String(d.outside.length).padStart(4)}  ${describeRuns(d.outside, t0)}`,
      ]),
      '',
    ];
    console.log(lines.join('\n'));
    mkdirSync(OUT, { recursive: true });
    writeFileSync(
      join(OUT, 'derp-switch.json'),
      `${JSON.stringify(
        {
          startedAt: new Date(t0).toISOString(),
          intervalMs: INTERVAL_MS,
          detectionWindowMs: DETECTION_WINDOW_MS,
          slackMs: SLACK_MS,
          phases: phases.map((p) => ({ ...p, before: p.before - t0, applied: p.applied - t0 })),
          loss: L.map((d) => ({
            direction: d.direction,
            sent: d.sent,
            delivered: d.stats.received,
            lost: d.lost.length,
            byWindow: Object.fromEntries([...d.byWindow].map(([w, l]) => [w, l.length])),
            elsewhere: d.outside.map((x) => ({ seq: x.seq, sentMs: x.sentAt - t0 })),
          })),
          timeline: timeline.sort((a, b) => a.at - b.at).map((e) => ({ ms: e.at - t0, who: e.who, what: e.what })),
        },
        null,
        2,
      )}\n`,
    );
    expect(timeline.length).toBeGreaterThan(10);
  });

  it('both peers start on a direct path', () => {
    expect(directAt).toHaveLength(2);
  });

  it.each(['block', 'lift', 'block again'])(
    '%s: both peers switch paths and delivery resumes on the new one',
    (name) => {
      const p = phases.find((x) => x.name === name);
      expect(p, `phase ${name} never ran (an earlier phase failed)`).toBeDefined();
      expect(p!.error ?? '').toBe('');
      for (const at of p!.pathAt) expect(at).toBeLessThanOrEqual(PATH_SWITCH_BOUND_MS + SLACK_MS);
      for (const r of p!.resumed) {
        expect(r).not.toBeNull();
        expect(r!.via).toBe(p!.blocked ? 'derp' : 'direct');
        // A block: the dead path is used alone at most DETECTION_WINDOW_MS. A lift: DERP carries the traffic meanwhile,
        // and the direct path is found by the next discovery ping (every DISCO_PING_INTERVAL_MS).
        const bound = p!.blocked ? DETECTION_WINDOW_MS : MAGICSOCK.DISCO_PING_INTERVAL_MS;
        expect(r!.afterMs).toBeLessThanOrEqual(bound + SLACK_MS);
      }
    },
  );

  it('no datagram is lost outside the detection windows, in either direction', () => {
    for (const d of losses()) {
      expect(
        d.outside.map((x) => `#${x.seq} sent +${x.sentAt - t0} ms`),
        d.direction,
      ).toEqual([]);
      expect(d.stats.duplicates, `${d.direction}: duplicates delivered`).toBe(0);
    }
  });

  it('delivery never pauses longer than the detection window', () => {
    for (const [i, ev] of events.entries()) {
      const longest = Math.max(0, ...ev.filter((e) => e.event === 'silence').map((e) => e.gapMs as number));
      expect(longest, `${traffic.peers[i]!.host}: longest pause in delivery`).toBeLessThanOrEqual(
        DETECTION_WINDOW_MS + SLACK_MS,
      );
    }
  });

  it('no error surfaced: no error line, clean exit', () => {
    for (const ev of events) expect(ev.filter((e) => e.event === 'error')).toEqual([]);
    expect(exitCodes).toEqual([0, 0]);
  });
});
