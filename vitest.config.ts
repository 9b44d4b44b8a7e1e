import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure cores, codecs, loopback integration; no root needed) and `lab` (network namespaces,
// needs root; each lab test file skips itself with one line saying why when it cannot run).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/lab/**'],
          testTimeout: 30_000,
          hookTimeout: 30_000,
          setupFiles: ['test/setup/fast-check.ts'],
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
