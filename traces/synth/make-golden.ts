/**
 * `npm run golden`: replays the bundled sample and writes the verdicts and
 * summary the end-to-end test compares against (test/golden/). Review the
 * diff by eye before committing: a golden file is only as good as that look.
 */
import { join } from 'node:path';
import { main } from '../../control/cli/main.js';
import { PROJECT_ROOT } from '../../control/common/paths.js';

export const GOLDEN_DIR = join(PROJECT_ROOT, 'test', 'golden');

process.chdir(PROJECT_ROOT);
process.exitCode = await main([
  'replay',
  'traces/samples/sample.pcap',
  '--cluster',
  'traces/samples/cluster.yaml',
  '--node',
  'node-a',
  '--verdicts',
  join(GOLDEN_DIR, 'sample.verdicts.jsonl'),
  '--summary',
  join(GOLDEN_DIR, 'sample.summary.json'),
]);
