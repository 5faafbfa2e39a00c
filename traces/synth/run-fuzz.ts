/** `npm run fuzz [-- --seed N --batches N]`: a long fuzz run; exits non-zero on any invariant violation. */
import { parseArgs } from 'node:util';
import { fuzz } from './fuzz.js';

const { values } = parseArgs({ options: { seed: { type: 'string' }, batches: { type: 'string' } } });
const seed = Number(values.seed ?? Date.now() % 1_000_000);
const batches = Number(values.batches ?? 20_000);
const started = performance.now();
const report = await fuzz({ seed, batches });
const seconds = (performance.now() - started) / 1000;
console.log(`fuzz seed ${seed}: ${report.frames} frames in ${seconds.toFixed(1)} s`);
for (const [outcome, n] of Object.entries(report.outcomes).sort((a, b) => b[1] - a[1])) console.log(`  ${outcome.padEnd(36)} ${n}`);
for (const f of report.failures) console.error(`FAIL ${f}`);
process.exitCode = report.failures.length ? 1 : 0;
