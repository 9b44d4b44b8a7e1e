import { describe, expect, it } from 'vitest';
import { parseDerpMap } from '../../src/derp/derp-map.js';
import { makeProbePlanInitial } from '../../src/netcheck/plan.js';
import { NetcheckRun, type NetcheckAction } from '../../src/netcheck/run.js';

const MAP = parseDerpMap({
  Regions: {
    '1': {
      Nodes: [
        { Name: '1a', HostName: 'a1.example', IPv6: 'none' },
        { Name: '1b', HostName: 'b1.example', IPv6: 'none' },
      ],
    },
    '2': { Nodes: [{ Name: '2a', HostName: 'a2.example', IPv6: 'none' }] },
    '3': { Nodes: [{ Name: '3a', HostName: 'a3.example', IPv6: 'none' }] },
    '4': { Nodes: [{ Name: '4s', HostName: 's4.example', IPv6: 'none', STUNOnly: true }] },
  },
});
const T0 = 10_000;
const ME = { ip: '198.51.100.9', port: 41641 };
const server = (n: number) => ({ ip: `192.0.2.${n}`, port: 3478 });

function newRun(opts: Partial<ConstructorParameters<typeof NetcheckRun>[2]> = {}) {
  return new NetcheckRun(makeProbePlanInitial(MAP, { v4: true, v6: false }), MAP, {
    start: T0,
    full: true,
    osHasIPv6: false,
    ...opts,
  });
}

const stuns = (a: NetcheckAction[]) =>
  a
    .filter((x): x is Extract<NetcheckAction, { kind: 'stun' }> => x.kind === 'stun')
    .map((x) => `${x.probe.node.name}#${x.probe.attempt}`);
const kinds = (a: NetcheckAction[]) => a.map((x) => x.kind);

describe('NetcheckRun', () => {
  it('sends the first try of every set at start and the retries at +100/+200 ms', () => {
    const run = newRun();
    expect(stuns(run.handleTimeout(T0))).toEqual(['1a#0', '2a#0', '3a#0', '4s#0']);
    expect(run.pollTimeout()).toBe(T0 + 100);
    expect(stuns(run.handleTimeout(T0 + 100))).toEqual(['1b#1', '2a#1', '3a#1', '4s#1']);
    expect(stuns(run.handleTimeout(T0 + 200))).toEqual(['1a#2', '2a#2', '3a#2', '4s#2']);
    expect(run.pollTimeout()).toBe(T0 + 3000);
  });

  it('a reply finishes its set: in-flight tries are cancelled, later ones never sent', () => {
    const run = newRun();
    const first = run.handleTimeout(T0);
    const id1 = (first[0] as Extract<NetcheckAction, { kind: 'stun' }>).id;
    const retry = run.handleTimeout(T0 + 100) as Extract<NetcheckAction, { kind: 'stun' }>[];
    const sent1b = retry.find((a) => a.probe.node.name === '1b')!.id;
    const out = run.handleStunReply(id1, server(1), ME, 40, T0 + 120);
    expect(out).toEqual([{ kind: 'cancel', ids: [sent1b] }]);
    expect(stuns(run.handleTimeout(T0 + 200))).not.toContain('1a#2');
    // A late answer to a cancelled probe is ignored.
    expect(run.handleStunReply(sent1b, server(1), ME, 1, T0 + 130)).toEqual([]);
    expect(run.builder.regionLatency().get(1)).toBe(40);
  });

  it('ends when every set has answered, without HTTP', () => {
    const run = newRun();
    const ids = run.handleTimeout(T0).map((a) => (a as { id: number }).id);
    run.handleStunReply(ids[0]!, server(1), ME, 10, T0 + 10);
    run.handleStunReply(ids[1]!, server(2), ME, 11, T0 + 11);
    run.handleStunReply(ids[2]!, server(3), ME, 12, T0 + 12);
    const out = run.handleStunReply(ids[3]!, server(4), ME, 13, T0 + 13);
    expect(kinds(out)).toEqual(['done']);
    expect(run.phase).toBe('done');
    expect(run.pollTimeout()).toBeUndefined();
    expect(run.builder.finish(new Date(0), 0, 1, 'best').mappingVariesByDestIP).toBe(false);
  });

  it('stops early once enough regions answered: after the slowest latency, doubled on full reports', () => {
    const run = newRun({ enoughRegions: 2 });
    const ids = run.handleTimeout(T0).map((a) => (a as { id: number }).id);
    run.handleStunReply(ids[0]!, server(1), ME, 10, T0 + 10);
    run.handleStunReply(ids[1]!, server(2), ME, 30, T0 + 30);
    // The 100/200 ms retries of the unanswered sets still go out before the stop time (T0 + 30 + 60).
    expect(run.pollTimeout()).toBe(T0 + 90);
    const out = run.handleTimeout(T0 + 90);
    expect(kinds(out)).toEqual(['cancel', 'done']);
    expect((out[0] as unknown as { ids: number[] }).ids).toEqual([ids[2], ids[3]]);
  });

  it('skips a due probe that would not help and finishes its set', () => {
    const run = newRun();
    const ids = run.handleTimeout(T0).map((a) => (a as { id: number }).id);
    // Region 1 answers via 1a and 2 via 2a, MappingVariesByDestIP is decided: nothing left to learn from region 1.
    run.handleStunReply(ids[1]!, server(2), ME, 5, T0 + 5);
    run.handleStunReply(ids[0]!, server(1), ME, 5, T0 + 6);
    expect(run.builder.probeWouldHelp(1, 4)).toBe(false);
    expect(stuns(run.handleTimeout(T0 + 100))).toEqual(['3a#1', '4s#1']);
  });

  it('a set whose every probe failed finishes without waiting for the STUN timeout', () => {
    const map = parseDerpMap({ Regions: { '1': { Nodes: [{ Name: '1a', HostName: 'a1.example', IPv6: 'none' }] } } });
    const run = new NetcheckRun(makeProbePlanInitial(map, { v4: true, v6: false }), map, {
      start: T0,
      full: true,
      osHasIPv6: false,
      httpFallback: false,
    });
    const a0 = run.handleTimeout(T0);
    expect(run.handleStunFailure((a0[0] as { id: number }).id, false, T0 + 1)).toEqual([]);
    const a1 = run.handleTimeout(T0 + 100);
    run.handleStunFailure((a1[0] as { id: number }).id, false, T0 + 101);
    const a2 = run.handleTimeout(T0 + 200);
    expect(kinds(run.handleStunFailure((a2[0] as { id: number }).id, false, T0 + 201))).toEqual(['done']);
    expect(run.builder.finish(new Date(0), 0, 0, 'none').ipv4CanSend).toBe(false);
  });

  it('no UDP after 3 s: HTTP(S) checks for regions with a DERP node, then done', () => {
    const run = newRun();
    run.handleTimeout(T0);
    run.handleTimeout(T0 + 100);
    run.handleTimeout(T0 + 200);
    const out = run.handleTimeout(T0 + 3000);
    expect(kinds(out)).toEqual(['cancel', 'http', 'http', 'http']);
    expect((out[0] as unknown as { ids: number[] }).ids).toHaveLength(12);
    const http = out.slice(1) as Extract<NetcheckAction, { kind: 'http' }>[];
    expect(http.map((h) => h.region.regionId)).toEqual([1, 2, 3]); // 4 is STUN-only
    expect(http[0]!.deadline).toBe(T0 + 5000);
    expect(run.phase).toBe('http');
    expect(run.handleHttpResult(http[0]!.id, 25, 4, T0 + 3100)).toEqual([]);
    expect(run.handleHttpResult(http[1]!.id, undefined, undefined, T0 + 3200)).toEqual([]);
    expect(kinds(run.handleHttpResult(http[2]!.id, 35, 4, T0 + 3300))).toEqual(['done']);
    const r = run.builder.finish(new Date(0), 0, 0, 'none');
    expect(r.udp).toBe(false);
    expect([...r.regionLatency]).toEqual([
      [1, 25],
      [3, 35],
    ]);
  });

  it('the 5 s report timeout cancels HTTP checks still running', () => {
    const run = newRun();
    run.handleTimeout(T0);
    const out = run.handleTimeout(T0 + 3000);
    const httpIds = out.filter((a) => a.kind === 'http').map((a) => (a as { id: number }).id);
    expect(run.pollTimeout()).toBe(T0 + 5000);
    const end = run.handleTimeout(T0 + 5000);
    expect(end).toEqual([{ kind: 'cancel', ids: httpIds }, { kind: 'done' }]);
  });

  it('httpFallback: false ends at the STUN timeout', () => {
    const run = newRun({ httpFallback: false });
    run.handleTimeout(T0);
    expect(kinds(run.handleTimeout(T0 + 3000))).toEqual(['cancel', 'done']);
  });
});
