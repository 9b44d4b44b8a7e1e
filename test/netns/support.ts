/**
 * Shared by the lab test files: whether this machine can run labs, and the one-line skip.
 * Lab tests need root, `ip netns`, nft, conntrack and coturn (see nat-lab/README.md).
 */
import { describe, it } from 'vitest';
import { labSupport } from '../../nat-lab/env.js';

const support = labSupport();

/** True when lab tests can run here. */
export const canRun = support.ok;

/**
 * `describe(name, fn)` when labs can run here; otherwise ONE skipped test whose name gives the reason and how to run
 * the file (e.g. "nat-lab faults (skipped: needs root and ip netns — run `sudo npm test` (or as root))").
 */
export function labSuite(name: string, fn: () => void): void {
  if (canRun) describe(name, fn);
  else it.skip(`${name} (skipped: ${support.reason})`, () => undefined);
}
