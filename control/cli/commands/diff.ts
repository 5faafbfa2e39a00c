/** `svcpath diff`: the flows whose decision changes between two cluster states. */
import { diffReplays, formatDiff } from '../../runtime/diff.js';
import { stopOnSignals } from '../../runtime/replay.js';
import { parseCommandArgs } from '../args.js';
import {
  buildDatapath,
  CLUSTER_OPTIONS,
  DATAPATH_FLAGS,
  DATAPATH_OPTIONS,
  fail,
  HELP_FOOTER,
  oneTrace,
  printHelp,
} from '../common-flags.js';

export const HELP = `svcpath diff: the flows whose decision (backend, verdict, masquerading) changes between two cluster
states, counted per Service

Usage:
  svcpath diff <trace> --cluster <before> [--cluster ...] --against <after> [--against ...] [flags]

Flags:
  --against PATH                   the other cluster state, read as --cluster is (repeatable)
  --json                           the report as JSON
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${HELP_FOOTER}`;

const FLAGS = { ...DATAPATH_FLAGS, against: { type: 'string', multiple: true }, json: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('diff', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  const trace = oneTrace('diff', positionals);
  if (!values.against?.length) fail('diff: --against is required (the other cluster state)');
  const before = await buildDatapath(values);
  const after = await buildDatapath({ ...values, cluster: values.against });
  // A pipe is copied to a temporary file first (diff reads the capture three times): a Ctrl-C must remove it.
  const signals = stopOnSignals();
  try {
    const report = await diffReplays(trace, before, after, signals.signal);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatDiff(report));
  } finally {
    signals.release();
  }
  return 0;
}
