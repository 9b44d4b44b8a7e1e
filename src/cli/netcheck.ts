/**
 * `meshsock netcheck`: a network report like `tailscale netcheck` (tailscale-protocols.md §4.4), run on sockets of
 * its own against the DERP map the user gives. There is no default map and no public server is ever contacted.
 */
import { readFile } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { parseArgs } from 'node:util';
import { isMeshsockError } from '../errors.js';
import { formatAddrPort } from '../internal/addr.js';
import { parseDerpMap, type DerpMap } from '../derp/derp-map.js';
import { openStandaloneNetcheck, type StandaloneNetcheck } from '../netcheck/netcheck.js';
import { reportToJSON, type NetcheckReport } from '../netcheck/report.js';

const USAGE = `usage: meshsock netcheck --derp-map FILE|JSON [options]

Reports UDP reachability, your public (STUN-mapped) addresses, whether your NAT's mapping varies by destination
("hard NAT"), latency to every DERP region and the nearest one.

options:
  --derp-map FILE|JSON   DERP map (required): a file, or the JSON itself, in Tailscale's DERPMap form (as
                         Headscale serves it) or meshsock's camelCase form
  --format FORMAT        "" (human, default), "json" (indented) or "json-line" (one object per line)
  --every DURATION       repeat every DURATION (e.g. 30s, 1m, 1m30s) with incremental reports; Ctrl-C stops
  --verbose              wait for every region and show per-family latency and how the nearest was chosen
  --bind-address ADDR    local IPv4 address for the UDP socket (default 0.0.0.0)
  --bind-port PORT       local UDP port (default 0: any)
  -h, --help             show this help`;

const NO_MAP = `a DERP map is required: pass --derp-map FILE (or the JSON itself).
meshsock has no built-in or default DERP servers and never contacts public ones;
use the map of your own derper or Headscale (Tailscale's DERPMap JSON works as is).`;

/** Where the command writes; injectable for tests. */
export interface NetcheckIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown };
  /** Stops `--every` (the CLI wires SIGINT to it). */
  signal?: AbortSignal;
}

/** Parses a Go-style duration ("500ms", "30s", "1m30s", "1h") or a plain number of seconds. Undefined if invalid. */
export function parseDuration(s: string): number | undefined {
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s) * 1000;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = s;
  if (rest === '') return undefined;
  while (rest !== '') {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) return undefined;
    total += Number(m[1]) * units[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** Loads a DERP map from a file path or inline JSON. Throws MeshsockError BAD_CONFIG / a file error. */
export async function loadDerpMap(arg: string): Promise<DerpMap> {
  const t = arg.trim();
  if (t.startsWith('{')) return parseDerpMap(t);
  if (/^https?:\/\//i.test(t))
    throw new Error(`--derp-map takes a file or JSON, not a URL (${t}); download the map and pass the file`);
  let text: string;
  try {
    text = await readFile(t, 'utf8');
  } catch (err) {
    throw new Error(`cannot read DERP map file ${JSON.stringify(t)}: ${(err as Error).message}`, { cause: err });
  }
  return parseDerpMap(text);
}

/** Latency like Go's Duration rounded to 0.1 ms: "0.3ms", "12.5ms", "1.2s". */
export function formatLatency(ms: number): string {
  if (ms >= 1000) return `${(Math.round(ms / 100) / 10).toString()}s`;
  return `${(Math.round(ms * 10) / 10).toFixed(1)}ms`;
}

function formatTime(d: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const tz =
    off === 0 ? 'Z' : `${off > 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}${tz}`
  );
}

/** The human report, line for line like `tailscale netcheck` (plus per-family detail with `verbose`). */
export function formatReport(r: NetcheckReport, map: DerpMap, verbose = false): string {
  const out: string[] = ['', 'Report:'];
  const line = (s: string) => out.push(`\t* ${s}`);
  line(`Time: ${formatTime(r.time)}`);
  line(`UDP: ${r.udp}`);
  line(r.globalV4 ? `IPv4: yes, ${formatAddrPort(r.globalV4)}` : 'IPv4: (no addr found)');
  if (r.globalV6) line(`IPv6: yes, ${formatAddrPort(r.globalV6)}`);
  else if (r.ipv6) line('IPv6: (no addr found)');
  else if (r.osHasIPv6) line('IPv6: no, but OS has support');
  else line('IPv6: no, unavailable in OS');
  line(`MappingVariesByDestIP: ${r.mappingVariesByDestIP ?? ''}`);
  line('PortMapping: not checked');
  if (r.regionLatency.size === 0) {
    line('Nearest DERP: unknown (no response to latency probes)');
  } else {
    const pref = map.regions.get(r.preferredDerp);
    if (r.preferredDerp === 0) line('Nearest DERP: [none]');
    else if (!pref) line(`Nearest DERP: ${r.preferredDerp} (region not found in map)`);
    else line(`Nearest DERP: ${pref.regionName}${verbose ? ` (chosen: ${r.preferredDerpReason})` : ''}`);
    line('DERP latency:');
    const ids = [...map.regions.keys()].sort((a, b) => {
      const da = r.regionLatency.get(a);
      const db = r.regionLatency.get(b);
      if (da === undefined || db === undefined) return da === db ? a - b : da === undefined ? 1 : -1;
      return da - db || a - b;
    });
    const codeWidth = Math.max(3, ...ids.map((id) => map.regions.get(id)!.regionCode.length));
    for (const id of ids) {
      const reg = map.regions.get(id)!;
      const d = r.regionLatency.get(id);
      const lat = d === undefined ? '' : formatLatency(d);
      let detail = reg.regionName;
      if (verbose) {
        const fam: string[] = [];
        const v4 = r.regionV4Latency.get(id);
        const v6 = r.regionV6Latency.get(id);
        if (v4 !== undefined) fam.push(`v4 ${formatLatency(v4)}`);
        if (v6 !== undefined) fam.push(`v6 ${formatLatency(v6)}`);
        if (r.httpLatencyRegions.has(id)) fam.push('via HTTP');
        if (reg.noMeasureNoHome) fam.push('not measured');
        detail = `derp${id}, ${reg.regionName}${fam.length ? `; ${fam.join(', ')}` : ''}`;
      }
      out.push(`\t\t- ${reg.regionCode.padStart(codeWidth)}: ${lat.padEnd(7)} (${detail})`);
    }
  }
  if (verbose) {
    line(`Report: ${r.full ? 'full' : 'incremental'}, ${formatLatency(r.durationMs)}`);
    line(`IPv4 can send: ${r.ipv4CanSend}, IPv6 can send: ${r.ipv6CanSend}`);
  }
  return `${out.join('\n')}\n`;
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Runs `meshsock netcheck`; resolves with the exit code (0 ok, 1 failure, 2 usage). */
export async function run(
  argv: string[],
  io: NetcheckIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'derp-map': { type: 'string' },
        format: { type: 'string', default: '' },
        every: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        'bind-address': { type: 'string' },
        'bind-port': { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr.write(`meshsock netcheck: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (values['help']) {
    io.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const usage = (msg: string): number => {
    io.stderr.write(`meshsock netcheck: ${msg}\n`);
    return 2;
  };
  const format = values['format'] as string;
  if (format !== '' && format !== 'json' && format !== 'json-line')
    return usage(`unknown output format "${format}" (use json or json-line)`);
  let everyMs = 0;
  if (values['every'] !== undefined) {
    const d = parseDuration(values['every'] as string);
    if (d === undefined || d <= 0)
      return usage(`--every: "${String(values['every'])}" is not a duration like 30s or 1m`);
    everyMs = d;
  }
  let bindPort: number | undefined;
  if (values['bind-port'] !== undefined) {
    const p = Number(values['bind-port']);
    if (!Number.isInteger(p) || p < 0 || p > 65535)
      return usage(`--bind-port: "${String(values['bind-port'])}" is not a port`);
    bindPort = p;
  }
  const bindAddress = values['bind-address'] as string | undefined;
  if (bindAddress !== undefined && !isIPv4(bindAddress))
    return usage(`--bind-address: "${bindAddress}" is not an IPv4 address`);
  const mapArg = values['derp-map'] as string | undefined;
  if (mapArg === undefined || mapArg.trim() === '') return usage(NO_MAP);
  let map: DerpMap;
  try {
    map = await loadDerpMap(mapArg);
  } catch (err) {
    io.stderr.write(`meshsock netcheck: ${(err as Error).message}\n`);
    return isMeshsockError(err) ? 2 : 1;
  }
  const verbose = values['verbose'] === true;
  if (format.startsWith('json'))
    io.stderr.write('# Warning: this JSON format is not yet considered a stable interface\n');

  // With --every, Ctrl-C ends the loop cleanly (exit 0) unless the caller brought its own signal.
  let signal = io.signal;
  let offSigint = (): void => {};
  if (!signal && everyMs > 0) {
    const ac = new AbortController();
    const onSigint = (): void => ac.abort();
    process.once('SIGINT', onSigint);
    offSigint = () => process.off('SIGINT', onSigint);
    signal = ac.signal;
  }

  let nc: StandaloneNetcheck;
  try {
    nc = await openStandaloneNetcheck({
      derpMap: map,
      verbose,
      ...(bindAddress !== undefined ? { bindAddress4: bindAddress } : {}),
      ...(bindPort !== undefined ? { bindPort } : {}),
    });
  } catch (err) {
    // One line, exit 1: an address not on this host, a busy port, no UDP at all.
    io.stderr.write(`meshsock netcheck: ${(err as Error).message}\n`);
    offSigint();
    return 1;
  }
  try {
    for (;;) {
      const report = await nc.getReport(signal ? { signal } : {});
      if (format === 'json') io.stdout.write(`${JSON.stringify(reportToJSON(report), null, '\t')}\n`);
      else if (format === 'json-line') io.stdout.write(`${JSON.stringify(reportToJSON(report))}\n`);
      else io.stdout.write(formatReport(report, map, verbose));
      if (everyMs === 0 || signal?.aborted) return 0;
      await sleep(everyMs, signal);
      if (signal?.aborted) return 0;
    }
  } catch (err) {
    if (signal?.aborted) return 0;
    io.stderr.write(`meshsock netcheck: ${(err as Error).message}\n`);
    return 1;
  } finally {
    offSigint();
    await nc.close();
  }
}
