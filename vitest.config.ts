import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The default order (failed first, then slowest first), except that test/netns/leftovers.test.ts always runs last:
 * its final check is that no earlier lab file left anything behind on the machine.
 */
class LeftoversLast extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const last = (f: TestSpecification): boolean => f.moduleId.endsWith('test/netns/leftovers.test.ts');
    return [...sorted.filter((f) => !last(f)), ...sorted.filter(last)];
  }
}

// Two projects: `unit` (pure cores, codecs, loopback integration; no root needed) and `netns` (network namespaces,
// needs root; each lab test file skips itself with one line saying why when it cannot run).
export default defineConfig({
  test: {
    sequence: { sequencer: LeftoversLast },
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/netns/**'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
          setupFiles: ['test/setup/fast-check.ts'],
        },
      },
      {
        test: {
          name: 'netns',
          include: ['test/netns/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
