/**
 * `svcpath test`: regression cases, each a directory holding a capture, a
 * cluster state, the replay's flags and the expected output.
 */
import { writeOutputFile } from '../../../traces/chunked.js';
import { InputError, inputError } from '../../common/errors.js';
import { checkOutputs } from '../../common/paths.js';
import { findCases, junitReport, runCase, type CaseResult, type PrepareDatapath } from '../../runtime/testcases.js';
import { parseCommandArgs } from '../args.js';
import { readReportAssets, writeReport } from '../report-file.js';
import { REPORT_FLAG, reportFrame } from '../report-flags.js';
import { buildReplayDatapath, DATAPATH_FLAGS, EVENTS_FLAGS, fail, HELP_FOOTER, noArguments, printHelp } from '../common-flags.js';

export const HELP = `svcpath test: regression cases; a case is a directory with cluster.yaml (or cluster/), input.pcap(ng),
an optional args file (replay flags, one line), optional events.jsonl (cluster changes during the capture)
and expected/verdicts.jsonl, expected/output.pcap(ng);
a directory that is no case is searched one level down for cases

Usage:
  svcpath test <case-dir>... [--update] [--junit FILE] [--report FILE.html]

Flags:
  --update                         (re)write the expected files from what the replay does now
  --junit FILE                     a JUnit XML report
  --report OUT.html                an HTML report that opens offline: each case passed or failed, with its
                                   replay's charts (as svcpath replay --report draws them)
${HELP_FOOTER}`;

const FLAGS = { update: { type: 'boolean' }, junit: { type: 'string' }, ...REPORT_FLAG } as const;

/** A case's failure in the report: its first lines. */
const FAILURE_LINES = 20;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('test', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  if (positionals.length === 0) fail('test: name at least one directory of test cases');
  const results: CaseResult[] = [];
  const cases = findCases(positionals);
  const outputs = (['junit', 'report'] as const).filter((f) => values[f] !== undefined).map((f) => ({ flag: `--${f}`, path: values[f]! }));
  checkOutputs(
    outputs,
    cases.map((c) => ({ flag: 'test case', path: c.dir })),
  );
  if (values.report !== undefined) readReportAssets();
  // The HTML report on standard output is the output: the lines for people go to stderr.
  const say = values.report === '-' ? console.error : console.log;
  for (const found of cases) {
    const r = await runCase(found, prepareCase, values.update ?? false, values.report !== undefined);
    results.push(r);
    say(r.passed ? `${r.updated ? 'UPDATED' : 'PASS'} ${r.name}` : `FAIL ${r.name} (${r.dir})\n${r.failure}`);
  }
  if (values.junit) writeOutputFile(values.junit, junitReport(results));
  if (values.report !== undefined) {
    const cases = results.map(({ name, passed, failure, run }) => ({
      name,
      passed,
      failures: failure?.split('\n').slice(0, FAILURE_LINES) ?? [],
      ...(run && { run }),
    }));
    writeReport(values.report, { ...reportFrame('test', argv), cases });
  }
  const failed = results.filter((r) => !r.passed).length;
  say(`${results.length - failed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

/**
 * A case's replay flags (its `args` file plus its cluster) through the same
 * parsing as the CLI's. A flag's error (its message starts with the flag) is
 * the args file's, and says so; the cluster's errors name their file already.
 */
const prepareCase: PrepareDatapath = async (argv, argsFile) => {
  const { values, positionals } = parseCommandArgs(argsFile, argv, { ...DATAPATH_FLAGS, ...EVENTS_FLAGS });
  noArguments(argsFile, positionals);
  try {
    const { compiled, dp, changes, eventsError } = await buildReplayDatapath(values);
    return { compiled, dp, changes, eventsError };
  } catch (e) {
    if (e instanceof InputError && e.message.startsWith('--')) throw inputError([argsFile], e.message);
    throw e;
  }
};
