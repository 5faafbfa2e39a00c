/**
 * `npm run fuzz:model [-- --seed N --runs N]`: the reference model against
 * the datapath (traces/synth/differential.ts) for many runs; test/model.test.ts runs
 * it short. Prints the outcomes reached, the flow changes the cluster
 * changes made and those changes, the oracle's rules exercised and, on a
 * disagreement or a backend the oracle does not allow, the shrunk
 * counterexample with the frame, both outcomes and the first differing byte;
 * exits non-zero then.
 */
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { agreementProperty, type Tallies } from './differential.js';

const { values } = parseArgs({ options: { seed: { type: 'string' }, runs: { type: 'string' } } });
const seed = Number(values.seed ?? Date.now() % 1_000_000);
const runs = Number(values.runs ?? 20_000);
for (const [flag, n] of [
  ['--seed', seed],
  ['--runs', runs],
] as const) {
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`run-model-fuzz: ${flag}: expected a non-negative integer`);
    process.exit(1);
  }
}

const tallies = { outcomes: new Map(), oracle: new Map(), flowChanges: new Map(), changes: new Map() } satisfies Tallies;
const started = performance.now();
const details = await fc.check(agreementProperty(tallies), { seed, numRuns: runs });
const seconds = (performance.now() - started) / 1000;
if (details.failed) {
  // The report names the shrunk cluster and traffic; the error, what differed and where.
  console.error(fc.defaultReportMessage(details));
  console.error(details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance));
  process.exitCode = 1;
} else {
  const frames = [...tallies.outcomes.values()].reduce((a, b) => a + b, 0);
  console.log(`model fuzz seed ${seed}: ${details.numRuns} runs, ${frames} frames decided alike in ${seconds.toFixed(1)} s`);
  const list = (title: string, tally: Map<string, number>, width: number) => {
    console.log(title);
    for (const [key, n] of [...tally].sort((a, b) => b[1] - a[1])) console.log(`  ${key.padEnd(width)} ${n}`);
  };
  list('outcomes:', tallies.outcomes, 28);
  list('flow changes:', tallies.flowChanges, 28);
  list('cluster changes synced, by the path the control plane took:', tallies.changes, 36);
  list('flows checked by the oracle, by the rule that chose (or kept) their backends:', tallies.oracle, 66);
}
