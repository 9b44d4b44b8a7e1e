// Property tests explore new random cases on every local run. CI pins the seed (FC_SEED in .ci/run) so a landing
// run is reproducible; a failing seed found locally is printed by fast-check and can be replayed with FC_SEED.
import fc from 'fast-check';

const seed = process.env.FC_SEED;
if (seed !== undefined && seed !== '') fc.configureGlobal({ seed: Number(seed) });
