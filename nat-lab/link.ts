/**
 * Link presets: delay, jitter and loss on a site's WAN link (between its outermost router and the internet).
 *
 * A preset's `rttMs` is the round trip it adds between the site and the internet: each direction is delayed by
 * rttMs / 2, and with `jitterMs` each frame's one-way delay varies uniformly within ±jitterMs / 2 (so the round
 * trip varies within ±jitterMs; frames are never reordered). `lossPct` drops that share of IP packets in each
 * direction. Two sites with `wan-20ms` therefore see about 40 ms between each other.
 *
 * Mechanisms, chosen once per process by probing:
 *   - `netem`: `tc qdisc … netem delay … loss …` on both veth ends, where the kernel has sch_netem;
 *   - `delay-line`: this machine's kernel has no netem, so a "wire" namespace is spliced into the link and
 *     nat-lab/tools/delay-line.c holds each frame for the delay (AF_PACKET, PACKET_VNET_HDR,
 *     PACKET_IGNORE_OUTGOING); loss is nft `numgen random mod 100 < N drop` on the ingress of both veth ends.
 * NAT_LAB_LINK=netem|delay-line forces one.
 */
import { ErrorCode, MeshsockError } from '../src/errors.js';
import { runSync } from './exec.js';

export interface LinkSpec {
  /** Round trip added between the site and the internet, ms. */
  rttMs: number;
  /** Round-trip variation, ms (each direction ±jitterMs/2, uniform). */
  jitterMs: number;
  /** Packets dropped per direction, percent (integer). */
  lossPct: number;
}

/** Named presets, each with what it stands for. */
export const LINK_PRESETS = {
  /** Same building: no impairment at all. */
  lan: { rttMs: 0, jitterMs: 0, lossPct: 0 },
  /** A good broadband line to a nearby server. */
  'wan-20ms': { rttMs: 20, jitterMs: 0, lossPct: 0 },
  /** Across a continent. */
  'wan-80ms': { rttMs: 80, jitterMs: 0, lossPct: 0 },
  /** Intercontinental or satellite-ish. */
  'wan-200ms': { rttMs: 200, jitterMs: 0, lossPct: 0 },
  /** Slightly lossy Wi-Fi. */
  'lossy-1': { rttMs: 20, jitterMs: 0, lossPct: 1 },
  /** Bad mobile link. */
  'lossy-5': { rttMs: 20, jitterMs: 0, lossPct: 5 },
  /** Busy mobile link: 40 ms ± 20 ms. */
  jitter: { rttMs: 40, jitterMs: 20, lossPct: 0 },
} as const satisfies Record<string, LinkSpec>;

export type LinkPresetName = keyof typeof LINK_PRESETS;
export const LINK_PRESET_NAMES = Object.keys(LINK_PRESETS) as LinkPresetName[];

export type LinkMechanism = 'netem' | 'delay-line';

/**
 * Parses a preset name or a custom `rtt=30,jitter=5,loss=2` (any subset); throws BAD_CONFIG naming the presets.
 */
export function parseLink(text: string | LinkSpec): LinkSpec {
  if (typeof text !== 'string') return validate(text);
  if (Object.hasOwn(LINK_PRESETS, text)) return { ...LINK_PRESETS[text as LinkPresetName] };
  if (/^[a-z]+=/.test(text)) {
    const spec: LinkSpec = { rttMs: 0, jitterMs: 0, lossPct: 0 };
    for (const part of text.split(',')) {
      const [k, v] = part.split('=');
      const n = Number(v);
      if (v === undefined || v === '' || !Number.isFinite(n) || n < 0) throw bad(text);
      if (k === 'rtt') spec.rttMs = n;
      else if (k === 'jitter') spec.jitterMs = n;
      else if (k === 'loss') spec.lossPct = n;
      else throw bad(text);
    }
    return validate(spec);
  }
  throw bad(text);
}

function bad(text: string): MeshsockError {
  return new MeshsockError(
    ErrorCode.BAD_CONFIG,
    `unknown link preset ${JSON.stringify(text)}; one of ${LINK_PRESET_NAMES.join(', ')} or rtt=MS,jitter=MS,loss=PCT`,
  );
}

function validate(s: LinkSpec): LinkSpec {
  if (!(s.rttMs >= 0 && s.rttMs <= 10_000) || !(s.jitterMs >= 0 && s.jitterMs <= s.rttMs * 2 + 1000))
    throw new MeshsockError(
      ErrorCode.BAD_CONFIG,
      `link rtt must be 0..10000 ms and jitter reasonable, got ${JSON.stringify(s)}`,
    );
  if (!Number.isInteger(s.lossPct) || s.lossPct < 0 || s.lossPct > 100)
    throw new MeshsockError(ErrorCode.BAD_CONFIG, `link loss must be an integer percent 0..100, got ${s.lossPct}`);
  return { ...s };
}

/** True when the spec changes nothing. */
export function isNoop(s: LinkSpec): boolean {
  return s.rttMs === 0 && s.jitterMs === 0 && s.lossPct === 0;
}

/** Short text for logs: `rtt 20 ms, jitter 0 ms, loss 1 %`. */
export function describeLink(s: LinkSpec): string {
  return `rtt ${s.rttMs} ms, jitter ${s.jitterMs} ms, loss ${s.lossPct} %`;
}

let mechanism: LinkMechanism | undefined;

/**
 * netem when the kernel has it, else the delay line. Probed once per process in a scratch namespace
 * (`probeNs`, which is created and deleted here) so the root namespace is never touched.
 */
export function linkMechanism(probeNs: string): LinkMechanism {
  const forced = process.env.NAT_LAB_LINK;
  if (forced === 'netem' || forced === 'delay-line') return forced;
  if (mechanism) return mechanism;
  runSync(['ip', 'netns', 'add', probeNs]);
  try {
    runSync(['ip', '-n', probeNs, 'link', 'set', 'dev', 'lo', 'up']);
    const r = runSync(
      ['ip', 'netns', 'exec', probeNs, 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'],
      {
        check: false,
      },
    );
    mechanism = r.code === 0 ? 'netem' : 'delay-line';
  } finally {
    runSync(['ip', 'netns', 'del', probeNs], { check: false });
  }
  return mechanism;
}

/** `tc qdisc` argv (after `tc qdisc replace dev X root`) for netem with this spec. */
export function netemArgs(s: LinkSpec): string[] {
  const args = ['netem'];
  if (s.rttMs > 0 || s.jitterMs > 0) {
    args.push('delay', `${s.rttMs / 2}ms`);
    if (s.jitterMs > 0) args.push(`${s.jitterMs / 2}ms`); // netem's default jitter distribution is uniform
  }
  if (s.lossPct > 0) args.push('loss', `${s.lossPct}%`);
  return args;
}

/** delay-line options for this spec (same delay both ways). */
export function delayLineArgs(s: LinkSpec, ifA: string, ifB: string): string[] {
  const us = Math.round((s.rttMs / 2) * 1000);
  const jus = Math.round((s.jitterMs / 2) * 1000);
  return ['-a', ifA, '-b', ifB, '-d', String(us), '-D', String(us), '-j', String(jus), '-J', String(jus)];
}

/** An nft script dropping `lossPct` % of IP packets arriving on `dev` (netdev ingress). */
export function lossRuleset(dev: string, lossPct: number): string {
  return [
    'table netdev natlab_loss {}',
    'delete table netdev natlab_loss',
    'table netdev natlab_loss {',
    `  chain in { type filter hook ingress device ${JSON.stringify(dev)} priority filter; meta protocol ip numgen random mod 100 < ${lossPct} drop; }`,
    '}',
    '',
  ].join('\n');
}
