/**
 * Cleanup: a lab owner killed with SIGTERM or SIGINT tears its lab down on the way out; one killed with SIGKILL
 * cannot, so its lab is left — and `leftovers` finds it and `teardownSync` (nat-lab down) removes it. Finally, no
 * nat-lab run of this suite left anything anywhere.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { expect, it } from 'vitest';
import { labSuite } from './support.js';
import { leftovers, teardownSync } from '../../nat-lab/cleanup.js';
import { createLab } from '../../nat-lab/topology.js';
import { newPrefix } from '../../nat-lab/plan.js';
import { runSync } from '../../nat-lab/exec.js';

const ROOT = join(import.meta.dirname, '..', '..');

async function holdLab(
  args: string[],
): Promise<{ prefix: string; kill: (sig: NodeJS.Signals) => Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/netns/fixtures/hold-lab.ts'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code, signal) => r(code ?? (signal ? -1 : null))),
  );
  const prefix = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', () => reject(new Error('fixture exited before printing its prefix')));
  });
  return {
    prefix,
    kill: async (sig) => {
      child.kill(sig);
      return exited;
    },
  };
}

labSuite('nat-lab cleanup and leftovers', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('a lab whose owner gets %s is torn down', async (sig) => {
    const h = await holdLab(['portmap', 'wan-20ms']); // namespaces, nft tables, coturn, miniupnpd, a delay line
    expect(leftovers(h.prefix).length).toBeGreaterThan(3);
    expect(await h.kill(sig)).toBe(sig === 'SIGTERM' ? 143 : 130);
    expect(leftovers(h.prefix)).toEqual([]);
  });

  it('a lab whose owner gets SIGKILL is found by leftovers() and removed by teardownSync()', async () => {
    const h = await holdLab(['easy']);
    await h.kill('SIGKILL');
    const left = leftovers(h.prefix);
    expect(left.some((l) => l.startsWith(`namespace ${h.prefix}-`))).toBe(true);
    expect(left.some((l) => l.startsWith('process '))).toBe(true); // coturn outlived its owner
    teardownSync(h.prefix);
    expect(leftovers(h.prefix)).toEqual([]);
  });

  it('a lab whose build fails halfway removes what it had created', async () => {
    const prefix = newPrefix();
    runSync(['ip', 'netns', 'add', `${prefix}-b1`]); // a name the build will need: creating the namespaces fails
    await expect(
      createLab({
        prefix,
        sites: [
          { name: 'a', profile: 'easy' },
          { name: 'b', profile: 'hard' },
        ],
      }),
    ).rejects.toThrow(/netns add|File exists/);
    expect(leftovers(prefix)).toEqual([]);
  });

  it('no nat-lab run left anything behind (namespaces, processes, root interfaces or nft tables, files)', () => {
    // A lab started by hand with `nat-lab up` counts too: `nat-lab down --all` removes it.
    expect(leftovers(), 'nat-lab leftovers on this machine').toEqual([]);
  });
});
