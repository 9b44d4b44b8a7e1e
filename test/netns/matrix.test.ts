/**
 * The traversal matrix with the real programs: nat-lab/peer.ts (a MagicSocket) on both hosts and `meshsock derp` in
 * the internet namespace, for every ordered pair of profiles plus the same-lan cells (66). Each cell must match its
 * expectation (`expectedOutcome` with MESHSOCK_PEER_CAPS: direct, or DERP with the reason); the grid is written to
 * nat-lab/out/matrix.{md,html,json} and printed.
 *
 * The harness's own checks (a broken cell is reported red, a wrong expectation fails) use the stand-in peer: they
 * test the judging, not traversal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { labSuite } from './support.js';
import {
  MATRIX_PROFILES,
  matrixCells,
  meshsockDerp,
  meshsockPeer,
  runMatrix,
  writeMatrixReports,
  type MatrixReport,
} from '../../nat-lab/matrix.js';
import { matrixMarkdown } from '../../nat-lab/matrix-report.js';
import { leftovers } from '../../nat-lab/cleanup.js';

const OUT = join(import.meta.dirname, '..', '..', 'nat-lab', 'out');
const CELLS = matrixCells(MATRIX_PROFILES);
/** How long a cell may take to go direct, and how long a DERP cell is watched before it is judged. */
const WINDOW_MS = 6000;

labSuite('nat-lab matrix', () => {
  describe('meshsock peer + meshsock derp, every pair of profiles', () => {
    let report: MatrixReport;
    let files: { md: string; html: string; json: string };

    beforeAll(async () => {
      report = await runMatrix({
        peer: await meshsockPeer(),
        derp: await meshsockDerp(),
        windowMs: WINDOW_MS,
        parallel: 3,
      });
      files = writeMatrixReports(report, OUT);
      console.log(`\n${matrixMarkdown(report)}`);
    }, 900_000);

    const cell = (a: string, b: string) => report.cells.find((c) => c.a === a && c.b === b)!;

    it.each(CELLS)('%s × %s matches its expectation', (a, b) => {
      const c = cell(a, b);
      expect(c, 'cell missing from the report').toBeDefined();
      expect(c.failure ?? '', JSON.stringify(c.peers.map((p) => ({ host: p.host, events: p.events })))).toBe('');
      expect(c.pass).toBe(true);
      expect(c.outcome).toBe(c.expected.path);
      expect(c.firstDatagramMs).toBeGreaterThan(0);
    });

    it('direct cells report a time to direct; DERP cells a reason', () => {
      for (const c of report.cells) {
        if (c.outcome === 'direct') expect(c.directMs, `${c.a} × ${c.b}`).toBeGreaterThan(0);
        else expect(c.expected.reason, `${c.a} × ${c.b}`).not.toBe('');
      }
      expect(cell('hard', 'hard').expected.reason).toMatch(/both NATs map per destination/);
      expect(cell('udp-blocked', 'open').expected.reason).toMatch(/UDP blocked/);
    });

    it('portmap × hard goes direct through the port mapping the portmap side got from its router', () => {
      for (const [a, b] of [
        ['portmap', 'hard'],
        ['hard', 'portmap'],
      ] as const) {
        const c = cell(a, b);
        const side = c.peers[a === 'portmap' ? 0 : 1]!;
        const status = side.events.find((e) => e.event === 'status') as
          { endpoints?: Array<{ type: string }> } | undefined;
        expect(
          status?.endpoints?.map((e) => e.type),
          `${a} × ${b}: ${side.host}'s endpoints`,
        ).toContain('portmap');
        expect(c.outcome).toBe('direct');
      }
    });

    it('writes the grid to nat-lab/out as Markdown, self-contained HTML and JSON', () => {
      const md = readFileSync(files.md, 'utf8');
      expect(md).toMatch(/\| \*\*easy\*\* \| 🟢 direct [\d.]+ s \/ [\d.]+ s \|/);
      expect(md).toMatch(/🟠 DERP/);
      expect(md).toMatch(/## Expected DERP cells and why/);
      expect(md).toMatch(/nat-lab\/peer\.ts \(MagicSocket\)/);
      const html = readFileSync(files.html, 'utf8');
      expect(html).toMatch(/<td class="direct"/);
      expect(html).toMatch(/<td class="derp"/);
      expect(html).not.toMatch(/<script|<link|src=/);
      expect((JSON.parse(readFileSync(files.json, 'utf8')) as MatrixReport).cells).toHaveLength(CELLS.length);
    });

    it('leaves nothing behind', () => {
      for (const c of report.cells) expect(leftovers(c.labPrefix)).toEqual([]);
    });
  });

  describe('harness (stand-in peer)', () => {
    it('reports a cell with neither UDP nor relay as broken (red)', async () => {
      const r = await runMatrix({ cells: [['udp-blocked', 'easy']], derp: null, windowMs: 2500 });
      expect(r.cells[0]!.outcome).toBe('broken');
      expect(r.cells[0]!.pass).toBe(false);
      expect(r.failed).toBe(1);
      expect(matrixMarkdown(r)).toMatch(/🔴 broken ✗/);
    });

    it('fails a cell whose outcome differs from the expectation', async () => {
      const r = await runMatrix({
        cells: [['easy', 'easy']],
        windowMs: 3000,
        expect: () => ({ path: 'derp', reason: 'deliberately wrong' }),
      });
      expect(r.cells[0]!.outcome).toBe('direct');
      expect(r.cells[0]!.failure).toBe('expected derp, got direct');
      expect(leftovers(r.cells[0]!.labPrefix)).toEqual([]);
    });
  });
});
