#!/usr/bin/env node
// `npx nat-lab` entry point (package.json "bin": { "nat-lab": "./nat-lab/bin.mjs" }): runs the compiled CLI.
// Committed executable so it works without a chmod after `tsc`; build first with `npm run build`.
let cli;
try {
  cli = await import('../dist/nat-lab/cli.js');
} catch (e) {
  process.stderr.write(
    `nat-lab: the compiled CLI is missing (run \`npm run build\` first): ${e.message.split('\n')[0]}\n`,
  );
  process.exit(1);
}
process.exitCode = await cli.main(process.argv.slice(2));
