/**
 * Matrix reports: a Markdown grid and a self-contained HTML page (no external assets). Rows are peer A's
 * profile, columns peer B's; each cell shows the outcome (green direct, amber DERP, red broken), the time to the
 * first datagram and the time to a direct path. A cell whose outcome differs from its expectation is marked ✗.
 */
import type { CellResult, MatrixReport } from './matrix.js';

const ICON = { direct: '🟢', derp: '🟠', broken: '🔴' } as const;
const COLOR = { direct: '#c8e6c9', derp: '#ffe0b2', broken: '#ffcdd2' } as const;

function secs(ms: number | null): string {
  return ms === null ? '–' : `${(ms / 1000).toFixed(2)} s`;
}

function cellText(c: CellResult): string {
  const label = c.outcome === 'derp' ? 'DERP' : c.outcome;
  const times = c.outcome === 'broken' ? '' : ` ${secs(c.firstDatagramMs)} / ${secs(c.directMs)}`;
  return `${ICON[c.outcome]} ${label}${times}${c.pass ? '' : ' ✗'}`;
}

function grid(report: MatrixReport): {
  rows: string[];
  cols: string[];
  at: (a: string, b: string) => CellResult | undefined;
} {
  const pairCells = report.cells.filter((c) => !c.a.startsWith('same-lan'));
  const rows = [...new Set(pairCells.map((c) => c.a))];
  const cols = [...new Set(pairCells.map((c) => c.b))];
  const at = (a: string, b: string): CellResult | undefined => pairCells.find((c) => c.a === a && c.b === b);
  return { rows, cols, at };
}

/** The Markdown report. */
export function matrixMarkdown(report: MatrixReport): string {
  const L: string[] = [];
  L.push('# nat-lab matrix', '');
  L.push(
    `Peer program: \`${report.peer}\` · DERP: \`${report.derp}\` · window ${report.windowMs} ms · link: ${report.link ?? 'none'}`,
  );
  L.push(`Run ${report.startedAt} → ${report.finishedAt}`, '');
  L.push(`**${report.passed} passed, ${report.failed} failed**`, '');
  L.push("Rows: peer A's profile; columns: peer B's. Cell: outcome, time to first datagram / time to direct path.");
  L.push('🟢 direct · 🟠 DERP · 🔴 broken · ✗ outcome differs from the expectation', '');
  const { rows, cols, at } = grid(report);
  if (rows.length > 0) {
    L.push(`| A \\ B | ${cols.join(' | ')} |`);
    L.push(`|---|${cols.map(() => '---').join('|')}|`);
    for (const a of rows)
      L.push(
        `| **${a}** | ${cols
          .map((b) => {
            const c = at(a, b);
            return c ? cellText(c) : '';
          })
          .join(' | ')} |`,
      );
    L.push('');
  }
  const lan = report.cells.filter((c) => c.a.startsWith('same-lan'));
  if (lan.length > 0) {
    L.push('## Same LAN (both peers behind one NAT)', '', '| cell | result |', '|---|---|');
    for (const c of lan) L.push(`| ${c.a} | ${cellText(c)} |`);
    L.push('');
  }
  const derp = report.cells.filter((c) => c.expected.path === 'derp');
  if (derp.length > 0) {
    L.push('## Expected DERP cells and why', '');
    for (const c of derp) L.push(`- **${c.a} × ${c.b}**: ${c.expected.reason}`);
    L.push('');
  }
  const failed = report.cells.filter((c) => !c.pass);
  L.push('## Failures', '');
  if (failed.length === 0) L.push('None.');
  for (const c of failed) L.push(`- **${c.a} × ${c.b}** (lab ${c.labPrefix || '?'}): ${c.failure ?? ''}`);
  L.push('');
  return `${L.join('\n')}\n`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

function htmlCell(c: CellResult | undefined): string {
  if (!c) return '<td class="none"></td>';
  const title = [
    `${c.a} × ${c.b}`,
    `expected ${c.expected.path}: ${c.expected.reason}`,
    `outcome ${c.outcome}`,
    c.failure ? `FAILED: ${c.failure}` : 'passed',
    `lab ${c.labPrefix}, build ${c.buildMs} ms, run ${c.runMs} ms`,
  ].join('\n');
  const label = c.outcome === 'derp' ? 'DERP' : c.outcome;
  return (
    `<td class="${c.outcome}${c.pass ? '' : ' fail'}" title="${esc(title)}">` +
    `<b>${esc(label)}</b>${c.pass ? '' : ' ✗'}<br><small>first ${secs(c.firstDatagramMs)}<br>direct ${secs(c.directMs)}</small></td>`
  );
}

/** The HTML page (self-contained: inline CSS, no scripts, no external resources). */
export function matrixHtml(report: MatrixReport): string {
  const { rows, cols, at } = grid(report);
  const lan = report.cells.filter((c) => c.a.startsWith('same-lan'));
  const failed = report.cells.filter((c) => !c.pass);
  const derp = report.cells.filter((c) => c.expected.path === 'derp');
  const css = `
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #999;padding:.4em .6em;text-align:center;vertical-align:middle}
th{background:#eee}
td.direct{background:${COLOR.direct}} td.derp{background:${COLOR.derp}} td.broken{background:${COLOR.broken}}
td.fail{outline:3px solid #b71c1c;outline-offset:-3px}
small{color:#444} .legend span{display:inline-block;padding:.2em .6em;margin-right:.5em;border:1px solid #999}
`;
  const H: string[] = [];
  H.push(
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><title>nat-lab matrix</title>',
    `<style>${css}</style></head><body>`,
  );
  H.push('<h1>nat-lab matrix</h1>');
  H.push(
    `<p>Peer program: <code>${esc(report.peer)}</code> · DERP: <code>${esc(report.derp)}</code> · window ${report.windowMs} ms · link: ${esc(report.link ?? 'none')}<br>` +
      `Run ${esc(report.startedAt)} → ${esc(report.finishedAt)} · <b>${report.passed} passed, ${report.failed} failed</b></p>`,
  );
  H.push(
    `<p class="legend"><span style="background:${COLOR.direct}">direct</span><span style="background:${COLOR.derp}">DERP</span>` +
      `<span style="background:${COLOR.broken}">broken</span><span style="outline:3px solid #b71c1c">✗ not as expected</span>` +
      ' Rows: peer A; columns: peer B. Times: first datagram, direct path. Hover a cell for the expectation and its reason.</p>',
  );
  if (rows.length > 0) {
    H.push('<table><tr><th>A \\ B</th>', ...cols.map((c) => `<th>${esc(c)}</th>`), '</tr>');
    for (const a of rows) H.push(`<tr><th>${esc(a)}</th>`, ...cols.map((b) => htmlCell(at(a, b))), '</tr>');
    H.push('</table>');
  }
  if (lan.length > 0) {
    H.push('<h2>Same LAN</h2><table><tr><th>cell</th><th>result</th></tr>');
    for (const c of lan) H.push(`<tr><th>${esc(c.a)}</th>${htmlCell(c)}</tr>`);
    H.push('</table>');
  }
  if (derp.length > 0) {
    H.push('<h2>Expected DERP cells and why</h2><ul>');
    for (const c of derp) H.push(`<li><b>${esc(c.a)} × ${esc(c.b)}</b>: ${esc(c.expected.reason)}</li>`);
    H.push('</ul>');
  }
  H.push('<h2>Failures</h2>');
  if (failed.length === 0) H.push('<p>None.</p>');
  else {
    H.push('<ul>');
    for (const c of failed) H.push(`<li><b>${esc(c.a)} × ${esc(c.b)}</b>: ${esc(c.failure ?? '')}</li>`);
    H.push('</ul>');
  }
  H.push('</body></html>', '');
  return H.join('\n');
}
