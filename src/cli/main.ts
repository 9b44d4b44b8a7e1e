#!/usr/bin/env node
/**
 * `meshsock` command line: `meshsock derp …` runs a DERP + STUN server, `meshsock netcheck …` prints the network
 * report. Each subcommand lives in its own module and exports `run(argv): Promise<number>` (the exit code).
 */
const USAGE = `usage: meshsock <command> [options]

commands:
  derp       run a DERP relay server with a STUN server beside it
  netcheck   report UDP reachability, mapped endpoints, NAT type and DERP latency

Run \`meshsock <command> --help\` for a command's options.`;

const commands: Record<string, () => Promise<{ run(argv: string[]): Promise<number> }>> = {
  derp: () => import('./derp.js'),
  netcheck: () => import('./netcheck.js'),
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return cmd === undefined ? 2 : 0;
  }
  const load = commands[cmd];
  if (!load) {
    process.stderr.write(`meshsock: unknown command "${cmd}"\n${USAGE}\n`);
    return 2;
  }
  return (await load()).run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`meshsock: ${e.code ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
