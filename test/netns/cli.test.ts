/**
 * CLI smoke test: `nat-lab` (run from source with tsx) — help, one-line errors with exit 2, and a lab's life:
 * up → list → exec → fault → down, then a one-cell matrix writing its reports.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { labSuite } from './support.js';
import { leftovers, teardownSync } from '../../nat-lab/cleanup.js';

const ROOT = join(import.meta.dirname, '..', '..');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'nat-lab', 'cli.ts'), ...args],
      { cwd: ROOT, timeout: 120_000 },
      (err, stdout, stderr) => {
        const code = err
          ? typeof (err as { code?: unknown }).code === 'number'
            ? (err as { code: number }).code
            : 1
          : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

labSuite('nat-lab CLI', () => {
  let prefix: string | undefined;
  const out = mkdtempSync(join(tmpdir(), 'nat-lab-cli-'));

  afterAll(() => {
    if (prefix) teardownSync(prefix);
    rmSync(out, { recursive: true, force: true });
  });

  it('prints help for every command', async () => {
    const main = await cli(['--help']);
    expect(main.code).toBe(0);
    expect(main.stdout).toMatch(/^usage: nat-lab <command>/);
    for (const cmd of ['up', 'exec', 'fault', 'down', 'list', 'selftest', 'matrix', 'leftovers']) {
      const r = await cli([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(new RegExp(`^usage: nat-lab ${cmd}`));
    }
  });

  it.each([
    [['up', 'bogus'], /^nat-lab: unknown profile "bogus"; one of open, easy/],
    [['up', 'easy', 'hard', '--link', 'warp'], /^nat-lab: unknown link preset "warp"/],
    [['up'], /^nat-lab: up takes one or two profiles/],
    [['frobnicate'], /^nat-lab: unknown command "frobnicate"/],
    [['fault', 'meteor'], /^nat-lab: unknown fault "meteor"/],
    [['matrix', '--window-ms', 'soon'], /^nat-lab: --window-ms must be an integer/],
    [['down', 'not-a-prefix'], /^nat-lab: not a lab prefix/],
    [['up', 'easy', '--bogus-flag'], /^nat-lab: Unknown option '--bogus-flag'/],
  ])('rejects %j with one line and exit 2', async (args, msg) => {
    const r = await cli(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(msg as RegExp);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('up → list → exec → fault → down', async () => {
    const up = await cli(['up', 'easy', 'hard', '--link', 'wan-20ms']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    prefix = /^lab (nl[0-9a-f]{4}):/.exec(up.stdout)?.[1];
    expect(prefix).toBeDefined();
    expect(up.stdout).toMatch(/host a1\s+192\.168\.1\.10\/24/);
    expect(up.stdout).toMatch(/host b1\s+192\.168\.2\.10\/24/);
    expect(existsSync(`/run/nat-lab/${prefix}.json`)).toBe(true);

    expect((await cli(['list'])).stdout).toContain(`lab ${prefix}: a=easy b=hard`);
    const ex = await cli(['exec', '--lab', prefix!, 'a1', '--', 'ip', '-br', 'addr']);
    expect(ex.code).toBe(0);
    expect(ex.stdout).toContain('192.168.1.10/24');
    expect((await cli(['exec', '--lab', prefix!, 'b1', '--', 'sh', '-c', 'exit 7'])).code).toBe(7);
    const f = await cli(['fault', '--lab', prefix!, 'nat-reboot', 'a']);
    expect(f.code).toBe(0);
    expect(f.stdout).toMatch(/NAT of site a rebooted/);
    const roam = await cli(['fault', '--lab', prefix!, 'roam', 'b1']);
    expect(roam.stdout).toMatch(/b1 moved from 192\.168\.2\.10 to 192\.168\.2\.\d+/);

    const down = await cli(['down', prefix!]);
    expect(down.code).toBe(0);
    expect(down.stdout).toMatch(new RegExp(`^${prefix}: removed \\d+ namespaces`));
    expect(leftovers(prefix)).toEqual([]);
    expect((await cli(['leftovers', prefix!])).stdout.trim()).toBe('clean');
    prefix = undefined;
  });

  it('matrix writes Markdown, HTML and JSON reports', async () => {
    const r = await cli(['matrix', '--cells', 'easy:easy', '--no-same-lan', '--window-ms', '3000', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/1 passed, 0 failed/);
    expect(readFileSync(join(out, 'matrix.md'), 'utf8')).toMatch(/\| \*\*easy\*\* \| 🟢 direct/);
    expect(readFileSync(join(out, 'matrix.html'), 'utf8')).toMatch(/<td class="direct"/);
    expect(JSON.parse(readFileSync(join(out, 'matrix.json'), 'utf8')).passed).toBe(1);
  });
});
