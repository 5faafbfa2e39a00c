/** `svcpath diff`: the flows whose decision changes between two cluster states. */
import { checkOutputs } from '../../common/paths.js';
import { diffReplays, formatDiff } from '../../runtime/diff.js';
import { stopOnSignals } from '../../runtime/replay.js';
import { diffView } from '../../runtime/report-data.js';
import { parseCommandArgs } from '../args.js';
import { readReportAssets, writeReport } from '../report-file.js';
import { REPORT_FLAG, reportFrame } from '../report-flags.js';
import {
  buildReplayDatapath,
  CLUSTER_OPTIONS,
  DATAPATH_FLAGS,
  DATAPATH_OPTIONS,
  EVENTS_FLAGS,
  EVENTS_OPTIONS,
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
  --report OUT.html                the report as an HTML page that opens offline: per Service, a matrix of
                                   the flows' decisions before and after (the backends they moved between)
  --against-semantics kube-proxy|cilium   with --events: the other side's datapath semantics (default: the
                                   same as --datapath-semantics); compares the two on the same changes
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${EVENTS_OPTIONS}
  With --events, both states go through the same changes, each from its own initial state.
${HELP_FOOTER}`;

const FLAGS = {
  ...DATAPATH_FLAGS,
  ...EVENTS_FLAGS,
  against: { type: 'string', multiple: true },
  'against-semantics': { type: 'string' },
  json: { type: 'boolean' },
  ...REPORT_FLAG,
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('diff', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  const trace = oneTrace('diff', positionals);
  if (!values.against?.length) fail('diff: --against is required (the other cluster state)');
  if (values['against-semantics'] !== undefined && values.events === undefined) {
    fail('--against-semantics: only with --events (it says how cluster changes apply)');
  }
  if (values.events === '-') fail('--events: diff reads the events once per side; name a file');
  if (values.report !== undefined) {
    checkOutputs(
      [{ flag: '--report', path: values.report }],
      [
        { flag: 'capture', path: trace },
        ...(values.cluster ?? []).map((path) => ({ flag: '--cluster', path })),
        ...values.against.map((path) => ({ flag: '--against', path })),
        ...(values.events === undefined ? [] : [{ flag: '--events', path: values.events }]),
      ],
    );
    readReportAssets();
  }
  const before = await buildReplayDatapath(values, trace);
  const after = await buildReplayDatapath(
    {
      ...values,
      cluster: values.against,
      'datapath-semantics': values['against-semantics'] ?? values['datapath-semantics'],
    },
    trace,
  );
  const eventsError = before.eventsError ?? after.eventsError;
  if (eventsError) throw eventsError;
  // A pipe is copied to a temporary file first (diff reads the capture three times): a Ctrl-C must remove it.
  const signals = stopOnSignals();
  try {
    const report = await diffReplays(trace, before, after, signals.signal);
    if (values.report !== undefined) writeReport(values.report, { ...reportFrame('diff', argv), diff: diffView(report) });
    // The HTML report on standard output is the output: the text goes to stderr.
    (values.report === '-' ? console.error : console.log)(values.json ? JSON.stringify(report, null, 2) : formatDiff(report));
  } finally {
    signals.release();
  }
  return 0;
}
