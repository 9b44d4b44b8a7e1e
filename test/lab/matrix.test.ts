/**
 * The matrix harness end to end with the stand-in peer and relay: cells that must go direct do, cells that need
 * DERP stay on it (with a reason), a cell with no relay and no UDP is reported broken, and a wrong expectation is
 * reported as a failure — the harness can fail.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { runMatrix, writeMatrixReports, type MatrixReport } from '../../nat-lab/matrix.js';
import { leftovers } from '../../nat-lab/cleanup.js';

const CELLS: Array<[string, string]> = [
  ['easy', 'easy'],
  ['hard', 'hard'],
  ['easy', 'hard'],
  ['hard', 'full-cone'],
  ['hard', 'easy-af'],
  ['portmap', 'hard'],
  ['cgnat', 'open'],
  ['udp-blocked', 'open'],
  ['same-lan', 'same-lan'],
];

labSuite('nat-lab matrix harness (stand-in peer)', () => {
  let report: MatrixReport;
  const dir = mkdtempSync(join(tmpdir(), 'nat-lab-matrix-'));

  beforeAll(async () => {
    report = await runMatrix({ cells: CELLS, windowMs: 4000, parallel: 3 });
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const cell = (a: string, b: string) => report.cells.find((c) => c.a === a && c.b === b)!;

  it.each(CELLS)('%s × %s matches its expectation', (a, b) => {
    const c = cell(a, b);
    expect(c.failure ?? '', JSON.stringify(c.peers.map((p) => p.events))).toBe('');
    expect(c.pass).toBe(true);
    expect(c.outcome).toBe(c.expected.path);
    expect(c.firstDatagramMs).toBeGreaterThan(0);
  });

  it('direct cells report a time to direct; DERP cells a reason', () => {
    expect(cell('easy', 'easy').directMs).toBeGreaterThan(0);
    expect(cell('hard', 'hard').directMs).toBeNull();
    expect(cell('hard', 'hard').expected.reason).toMatch(/both NATs map per destination/);
    expect(cell('udp-blocked', 'open').expected.reason).toMatch(/UDP blocked/);
  });

  it('writes the grid as Markdown and self-contained HTML', () => {
    const files = writeMatrixReports(report, dir);
    const md = readFileSync(files.md, 'utf8');
    expect(md).toMatch(/\| \*\*easy\*\* \| 🟢 direct [\d.]+ s \/ [\d.]+ s \| 🟠 DERP/);
    expect(md).toMatch(/## Expected DERP cells and why/);
    const html = readFileSync(files.html, 'utf8');
    expect(html).toMatch(/<td class="direct"/);
    expect(html).toMatch(/<td class="derp"/);
    expect(html).not.toMatch(/<script|<link|src=/);
  });

  it('leaves nothing behind', () => {
    for (const c of report.cells) expect(leftovers(c.labPrefix)).toEqual([]);
  });

  it('reports a cell with neither UDP nor relay as broken (red)', async () => {
    const r = await runMatrix({ cells: [['udp-blocked', 'easy']], derp: null, windowMs: 2500 });
    expect(r.cells[0]!.outcome).toBe('broken');
    expect(r.cells[0]!.pass).toBe(false);
    expect(r.failed).toBe(1);
  });

  it('fails a cell whose outcome differs from the expectation', async () => {
    const r = await runMatrix({
      cells: [['easy', 'easy']],
      windowMs: 3000,
      expect: () => ({ path: 'derp', reason: 'deliberately wrong' }),
    });
    expect(r.cells[0]!.outcome).toBe('direct');
    expect(r.cells[0]!.failure).toBe('expected derp, got direct');
  });
});
