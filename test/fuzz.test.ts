// A short, seeded run of the datapath fuzzer (traces/synth/fuzz.ts); `npm run fuzz` runs it long.
import { expect, it } from 'vitest';
import { fuzz } from '../traces/synth/fuzz.js';

it('keeps every invariant on mutated, corpus and random frames', async () => {
  const report = await fuzz({ seed: 2026, batches: 60 });
  expect(report.failures).toEqual([]);
  expect(report.frames).toBe(60 * 256);
  // The run reaches the decisions that matter, not only the parser's rejections.
  for (const outcome of [
    'TX SERVICE',
    'REDIRECT SERVICE',
    'DROP MALFORMED',
    'PASS NO_SERVICE',
    'TX NO_ENDPOINTS',
    'PASS UNSUPPORTED_LINKTYPE',
    'TX REPLY',
    'TX ICMP_RELATED',
  ]) {
    expect(report.outcomes[outcome] ?? 0, outcome).toBeGreaterThan(0);
  }
});
