/**
 * Issue 4's fault scenarios: two MagicSockets (nat-lab/peer.ts) behind `easy` NATs on a direct path, the real DERP
 * server (`meshsock derp`, its key kept across restarts as a deployed derper's is) in the internet namespace, a
 * 64-byte datagram every 20 ms each way. Then, in turn:
 *
 *   nat-reboot          site a's NAT forgets every mapping (conntrack -F and the learned nft state)
 *   link-flap           site a's WAN link down for 3 s, then up (times count from "up")
 *   derp-restart        the DERP server restarts while the peers are direct (only the relay link is affected)
 *   derp-restart-relayed  the same while direct UDP is blocked, so the traffic depends on DERP; then the block is
 *                       lifted (time to direct counts from the lift)
 *   roam                a1 gets a new LAN address (its NAT mapping changes; the old one is a black hole)
 *
 * For each: delivery must resume (over DERP or direct) — the first datagram *sent after* the fault reaches the other
 * peer — and the direct path must come back, both within RECOVERY_BOUND_MS (generous: recovery is measured and
 * reported, never held to a tight time). The table of times is printed and written to nat-lab/out/recovery.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { createLab, type Lab } from '../../nat-lab/topology.js';
import { blockUdp, natReboot, restartProcess, roam, setLink } from '../../nat-lab/faults.js';
import { leftovers } from '../../nat-lab/cleanup.js';
import { sleep } from '../../nat-lab/exec.js';
import { startRelay, startTraffic, type PeerStats, type Traffic } from '../../nat-lab/traffic.js';
import { attributeLoss, formatTimeline, lostDatagrams, peerTimeline, type TimelineEntry } from '../../nat-lab/loss.js';
import type { PeerEvent } from '../../nat-lab/matrix.js';

const OUT = join(import.meta.dirname, '..', '..', 'nat-lab', 'out');
const INTERVAL_MS = 20;
/** Delivery and the direct path must be back this soon after a fault. */
const RECOVERY_BOUND_MS = 30_000;
const LINK_DOWN_MS = 3000;
const SETTLE_MS = 1500;
const HOSTS = ['a1', 'b1'] as const;

interface FaultRun {
  name: string;
  about: string;
  /** Phase start, start of the fault itself (after any setup, e.g. a block), fault complete (link flap: link up). */
  start: number;
  injectAt: number;
  faultAt: number;
  end: number;
  /** Per receiver (a1, b1): ms from the fault until the first datagram sent after it arrived, and over which path. */
  resumedMs: Array<number | null>;
  via: Array<string | null>;
  /** Per receiver: ms from `directFrom` until the first direct datagram sent after it arrived. */
  directMs: Array<number | null>;
  /** What the direct time counts from (the fault, or the lift of a block). */
  directFrom: string;
  /** Per peer: ms from the fault until its DERP connection was up again (only when it went down). */
  relayMs: Array<number | null>;
  error?: string;
}

labSuite('recovery from faults with steady traffic (issue 4; meshsock peer + meshsock derp, easy × easy)', () => {
  let lab: Lab | undefined;
  let traffic: Traffic;
  let t0 = 0;
  const runs: FaultRun[] = [];
  const marks: TimelineEntry[] = [];
  let final: PeerStats[] = [];
  let events: PeerEvent[][] = [];
  let exitCodes: Array<number | null> = [];

  const note = (what: string): void => void marks.push({ at: Date.now(), who: 'test', what });

  /** Waits until both peers' latest path is direct (it may already be). */
  async function ensureDirect(): Promise<void> {
    if (traffic.peers.every((p) => p.path()?.type === 'direct')) return;
    const since = Date.now();
    await traffic.waitAll((e) => e.event === 'path' && e.type === 'direct' && (e.at as number) >= since - 50, {
      timeoutMs: RECOVERY_BOUND_MS,
      what: 'a direct path before the next fault',
    });
  }

  async function measure(
    name: string,
    about: string,
    inject: () => Promise<void>,
    opts: { setup?: () => Promise<void>; afterResumed?: () => Promise<void>; directFrom?: string } = {},
  ): Promise<void> {
    const r: FaultRun = {
      name,
      about,
      start: Date.now(),
      injectAt: 0,
      faultAt: 0,
      end: 0,
      resumedMs: [null, null],
      via: [null, null],
      directMs: [null, null],
      directFrom: opts.directFrom ?? 'the fault',
      relayMs: [null, null],
    };
    runs.push(r);
    try {
      await ensureDirect();
      r.start = Date.now();
      await opts.setup?.();
      r.injectAt = Date.now();
      await inject();
      r.faultAt = Date.now();
      note(`${name}: ${about}`);
      const n = await traffic.mark();
      const resumed = await traffic.waitAll((e) => e.event === 'resumed' && e.n === n, {
        timeoutMs: RECOVERY_BOUND_MS,
        what: `delivery after ${name}`,
      });
      r.resumedMs = resumed.map((e) => (e.at as number) - r.faultAt);
      r.via = resumed.map((e) => String(e.via));
      let m = n;
      let from = r.faultAt;
      if (opts.afterResumed) {
        await sleep(SETTLE_MS);
        await opts.afterResumed();
        from = Date.now();
        m = await traffic.mark();
      }
      const direct = await traffic.waitAll((e) => e.event === 'resumed-direct' && e.n === m, {
        timeoutMs: RECOVERY_BOUND_MS,
        what: `a direct datagram after ${name}`,
      });
      r.directMs = direct.map((e) => (e.at as number) - from);
      await sleep(SETTLE_MS);
    } catch (e) {
      r.error = e instanceof Error ? e.message : String(e);
    } finally {
      r.end = Date.now();
      r.relayMs = traffic.peers.map((p) => {
        const from = r.injectAt || r.start;
        const ev = p
          .events()
          .filter((e) => e.event === 'relay' && (e.at as number) >= from && (e.at as number) <= r.end);
        const down = ev.findIndex((e) => e.state !== 'connected');
        const up = down < 0 ? undefined : ev.slice(down).find((e) => e.state === 'connected');
        return up ? (up.at as number) - from : null;
      });
    }
  }

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', profile: 'easy' },
        { name: 'b', profile: 'easy' },
      ],
    });
    const l = lab;
    await startRelay(l);
    traffic = await startTraffic(l, HOSTS, { intervalMs: INTERVAL_MS });
    t0 = Date.now();
    await traffic.waitAll((e) => e.event === 'path' && e.type === 'direct', { timeoutMs: 15_000, what: 'direct' });
    await sleep(SETTLE_MS);

    await measure('nat-reboot', "site a's NAT forgets every mapping", () => natReboot(l, 'a'));
    await measure('link-flap', `site a's WAN link down ${LINK_DOWN_MS / 1000} s, then up`, async () => {
      await setLink(l, 'a', false);
      note('link-flap: site a WAN down');
      await sleep(LINK_DOWN_MS);
      await setLink(l, 'a', true);
    });
    await measure('derp-restart', 'DERP server restarted (peers direct)', async () => {
      await restartProcess(l, 'derp');
      await l.process('derp')!.waitForLine(/meshsock derp: serving/, 15_000);
    });
    await measure(
      'derp-restart-relayed',
      'DERP server restarted while direct UDP is blocked',
      async () => {
        await restartProcess(l, 'derp');
        await l.process('derp')!.waitForLine(/meshsock derp: serving/, 15_000);
      },
      {
        setup: async () => {
          const since = Date.now();
          await blockUdp(l, 'a', 'b', true);
          note('derp-restart-relayed: direct UDP blocked (setup)');
          await traffic.waitAll((e) => e.event === 'path' && e.type === 'derp' && (e.at as number) >= since, {
            timeoutMs: RECOVERY_BOUND_MS,
            what: 'the DERP path before the restart',
          });
          await sleep(SETTLE_MS);
        },
        directFrom: 'the lift of the block',
        afterResumed: async () => {
          await blockUdp(l, 'a', 'b', false);
          note('derp-restart-relayed: block lifted');
        },
      },
    );
    await measure('roam', 'a1 moved to a new LAN address', async () => {
      const moved = await roam(l, 'a1');
      note(`roam: a1 ${moved.from} → ${moved.to}`);
    });

    final = await traffic.stop();
    events = traffic.peers.map((p) => p.events());
    exitCodes = await Promise.all(traffic.peers.map(async (p) => (await p.proc.exited).code));
  }, 600_000);

  afterAll(async () => {
    const prefix = lab?.prefix;
    await lab?.close();
    if (prefix) expect(leftovers(prefix)).toEqual([]);
  });

  const secs = (ms: number | null): string => (ms === null ? '—' : `${(ms / 1000).toFixed(2)} s`);

  it('prints the recovery table and timeline (and writes nat-lab/out/recovery.json)', () => {
    // Loss per fault and direction (receiver i counts what the other peer sent), by send time: from the start of the
    // fault itself to the end of its phase. A setup step (the block before a relayed restart) is counted apart.
    const windows = runs.flatMap((r) => [
      { name: r.name, from: r.injectAt || r.start, to: r.end },
      ...(r.injectAt > r.start ? [{ name: `${r.name} setup`, from: r.start, to: r.injectAt }] : []),
    ]);
    const lost = final.map((s) => attributeLoss(lostDatagrams(s.gaps, INTERVAL_MS), windows).byWindow);
    const pauses = runs.map((r) =>
      events.map((ev) =>
        Math.max(
          0,
          ...ev
            // a pause belongs to the phase in which delivery resumed
            .filter(
              (e) =>
                e.event === 'silence' && (e.toAt as number) > (r.injectAt || r.start) && (e.toAt as number) <= r.end,
            )
            .map((e) => e.gapMs as number),
        ),
      ),
    );
    const rows = runs.map((r, i) => ({
      fault: r.name,
      about: r.about,
      resumed: r.resumedMs,
      via: r.via,
      direct: r.directMs,
      directFrom: r.directFrom,
      derpReconnected: r.relayMs,
      lost: { 'b1→a1': lost[0]!.get(r.name)?.length ?? 0, 'a1→b1': lost[1]!.get(r.name)?.length ?? 0 },
      lostInSetup: {
        'b1→a1': lost[0]!.get(`${r.name} setup`)?.length ?? 0,
        'a1→b1': lost[1]!.get(`${r.name} setup`)?.length ?? 0,
      },
      longestPauseMs: pauses[i] ?? [],
      ...(r.error ? { error: r.error } : {}),
    }));
    const table = [
      '',
      `Recovery, easy × easy, a datagram every ${INTERVAL_MS} ms each way (times per receiver a1 / b1)`,
      '| fault | delivery resumed | via | direct again | DERP reconnected | lost b1→a1 / a1→b1 | longest pause |',
      '|---|---|---|---|---|---|---|',
      ...rows.map(
        (r) =>
          `| ${r.fault} | ${r.resumed.map(secs).join(' / ')} | ${r.via.map((v) => v ?? '—').join(' / ')} | ${r.direct
            .map(secs)
            .join(' / ')}${r.directFrom === 'the fault' ? '' : ` (from ${r.directFrom})`} | ${r.derpReconnected
            .map(secs)
            .join(' / ')} | ${r.lost['b1→a1']} / ${r.lost['a1→b1']} | ${r.longestPauseMs
            .map((p) => secs(p ?? 0))
            .join(' / ')} |${r.error ? ` **FAILED**: ${r.error}` : ''}`,
      ),
      ...rows
        .filter((r) => r.lostInSetup['b1→a1'] + r.lostInSetup['a1→b1'] > 0)
        .map(
          (r) =>
            `(${r.fault} setup, not counted above: ${r.lostInSetup['b1→a1']} / ${r.lostInSetup['a1→b1']} lost while the block took effect)`,
        ),
      '',
      formatTimeline([...marks, ...traffic.peers.flatMap((p, i) => peerTimeline(p.host, events[i]!))], t0),
      '',
      ...traffic.peers.map(
        (p, i) => `${p.host} final status: ${JSON.stringify(events[i]!.find((e) => e.event === 'status'))}`,
      ),
      '',
    ];
    console.log(table.join('\n'));
    mkdirSync(OUT, { recursive: true });
    writeFileSync(
      join(OUT, 'recovery.json'),
      `${JSON.stringify({ startedAt: new Date(t0).toISOString(), intervalMs: INTERVAL_MS, boundMs: RECOVERY_BOUND_MS, faults: rows }, null, 2)}\n`,
    );
    expect(rows).toHaveLength(5);
  });

  it.each(['nat-reboot', 'link-flap', 'derp-restart', 'derp-restart-relayed', 'roam'])(
    '%s: delivery resumes and the direct path comes back',
    (name) => {
      const r = runs.find((x) => x.name === name);
      expect(r, `${name} never ran`).toBeDefined();
      const status = traffic.peers.map((p) => `${p.host}: ${p.tailEvents(8)}`).join('\n');
      expect(r!.error ?? '', `${name} did not recover; latest lines:\n${status}`).toBe('');
      for (const ms of [...r!.resumedMs, ...r!.directMs]) {
        expect(ms).not.toBeNull();
        expect(ms!).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
      }
    },
  );

  it('no error surfaced, no duplicate delivered, clean exit', () => {
    for (const ev of events) expect(ev.filter((e) => e.event === 'error')).toEqual([]);
    for (const s of final) expect(s.duplicates).toBe(0);
    expect(exitCodes).toEqual([0, 0]);
  });
});
