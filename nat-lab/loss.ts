/**
 * Accounting for fault scenarios (pure functions over the peer program's JSON lines): which datagrams were lost
 * and when they were sent, which window of the scenario each loss falls in, and a merged timeline of both peers.
 *
 * A receiver knows the send time of every datagram it got (it is in the payload) and reports each run of missing
 * sequence numbers with the send times of the datagrams on either side (`Gap.afterAt` / `beforeAt`); the peer sends
 * at a steady interval, so the send time of each lost datagram is interpolated between those two.
 */
import type { Gap } from './traffic.js';

export interface LostDatagram {
  seq: number;
  /** Estimated send time (wall clock, ms). */
  sentAt: number;
}

/** A named span of the scenario, e.g. "block 1: trust may still hold the dead path". */
export interface LossWindow {
  name: string;
  from: number;
  to: number;
}

/** Every lost datagram with its estimated send time. `intervalMs` is used only for a gap that starts at 0. */
export function lostDatagrams(gaps: readonly Gap[], intervalMs: number): LostDatagram[] {
  const out: LostDatagram[] = [];
  for (const g of gaps) {
    for (let seq = g.first; seq <= g.last; seq++) {
      let sentAt: number;
      if (g.afterAt !== null && g.beforeAt !== null) {
        const span = g.last + 1 - (g.first - 1);
        sentAt = g.afterAt + ((seq - (g.first - 1)) * (g.beforeAt - g.afterAt)) / span;
      } else if (g.beforeAt !== null) sentAt = g.beforeAt - (g.last + 1 - seq) * intervalMs;
      else if (g.afterAt !== null) sentAt = g.afterAt + (seq - (g.first - 1)) * intervalMs;
      else sentAt = Number.NaN;
      out.push({ seq, sentAt: Math.round(sentAt) });
    }
  }
  return out;
}

/** Sorts lost datagrams into the window their send time falls in (first match); the rest are `outside`. */
export function attributeLoss(
  lost: readonly LostDatagram[],
  windows: readonly LossWindow[],
): { byWindow: Map<string, LostDatagram[]>; outside: LostDatagram[] } {
  const byWindow = new Map<string, LostDatagram[]>(windows.map((w) => [w.name, []]));
  const outside: LostDatagram[] = [];
  for (const d of lost) {
    const w = windows.find((x) => d.sentAt >= x.from && d.sentAt <= x.to);
    if (w) byWindow.get(w.name)!.push(d);
    else outside.push(d);
  }
  return { byWindow, outside };
}

/** Runs of consecutive sequence numbers, for printing ("120–164 (45)"). */
export function describeRuns(lost: readonly LostDatagram[], t0: number): string {
  if (lost.length === 0) return 'none';
  const runs: Array<[LostDatagram, LostDatagram]> = [];
  for (const d of lost) {
    const last = runs.at(-1);
    if (last && d.seq === last[1].seq + 1) last[1] = d;
    else runs.push([d, d]);
  }
  return runs
    .map(([a, b]) => {
      const n = b.seq - a.seq + 1;
      const when = `sent ${secs(a.sentAt - t0)}${n > 1 ? `–${secs(b.sentAt - t0)}` : ''}`;
      return `#${a.seq}${n > 1 ? `–${b.seq}` : ''} (${n}, ${when})`;
    })
    .join(', ');
}

export interface TimelineEntry {
  at: number;
  who: string;
  what: string;
}

/** The interesting lines of one peer as timeline entries (path changes, relay state, silences, resumptions). */
export function peerTimeline(who: string, events: ReadonlyArray<Record<string, unknown>>): TimelineEntry[] {
  const out: TimelineEntry[] = [];
  for (const e of events) {
    const at = typeof e.at === 'number' ? e.at : Number.NaN;
    switch (e.event) {
      case 'first-datagram':
        out.push({ at, who, what: `first datagram (via ${String(e.via)})` });
        break;
      case 'path':
        out.push({
          at,
          who,
          what: `path → ${String(e.type)}${e.addr ? ` ${String(e.addr)}` : ''} (${String(e.reason)})`,
        });
        break;
      case 'rx-path':
        out.push({ at, who, what: `now receiving over ${String(e.type)} (#${String(e.seq)})` });
        break;
      case 'relay':
        out.push({ at, who, what: `DERP ${String(e.state)}${e.lastError ? ` (${String(e.lastError)})` : ''}` });
        break;
      case 'silence':
        out.push({
          at,
          who,
          what: `delivery resumed via ${String(e.via)} after ${Number(e.gapMs)} ms of silence (#${String(e.seq)})`,
        });
        break;
      case 'resumed':
        out.push({
          at,
          who,
          what: `mark ${String(e.n)}: first datagram sent after it arrived via ${String(e.via)}, +${Number(e.afterMs)} ms`,
        });
        break;
      case 'resumed-direct':
        out.push({ at, who, what: `mark ${String(e.n)}: first direct datagram, +${Number(e.afterMs)} ms` });
        break;
      case 'error':
        out.push({ at, who, what: `ERROR ${String(e.message)}` });
        break;
    }
  }
  return out;
}

/** One line per entry, sorted by time: "  +12.345 s  a1     path → derp (ping-timeout)". */
export function formatTimeline(entries: readonly TimelineEntry[], t0: number): string {
  const width = Math.max(4, ...entries.map((e) => e.who.length));
  return [...entries]
    .sort((a, b) => a.at - b.at)
    .map((e) => `  ${`${signed(e.at - t0, 3)} s`.padStart(11)}  ${e.who.padEnd(width)}  ${e.what}`)
    .join('\n');
}

function secs(ms: number): string {
  return `${signed(ms, 2)} s`;
}

/** "+1.234" or "-0.018" seconds from milliseconds. */
function signed(ms: number, digits: number): string {
  return `${ms < 0 ? '-' : '+'}${(Math.abs(ms) / 1000).toFixed(digits)}`;
}
