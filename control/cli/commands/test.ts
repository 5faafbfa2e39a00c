/**
 * `svcpath test`: regression cases, each a directory holding a capture, a
 * cluster state, the replay's flags and the expected output.
 */
import { writeOutputFile } from '../../../traces/chunked.js';
import { InputError, inputError } from '../../common/errors.js';
import { checkOutputs } from '../../common/paths.js';
import { findCases, junitReport, runCase, type CaseResult, type PrepareDatapath } from '../../runtime/testcases.js';
import { parseCommandArgs } from '../args.js';
import { buildReplayDatapath, DATAPATH_FLAGS, EVENTS_FLAGS, fail, HELP_FOOTER, noArguments, printHelp } from '../common-flags.js';

export const HELP = `svcpath test: regression cases; a case is a directory with cluster.yaml (or cluster/), input.pcap(ng),
an optional args file (replay flags, one line), optional events.jsonl (cluster changes during the capture)
and expected/verdicts.jsonl, expected/output.pcap(ng);
a directory that is no case is searched one level down for cases

Usage:
  svcpath test <case-dir>... [--update] [--junit FILE]

Flags:
  --update                         (re)write the expected files from what the replay does now
  --junit FILE                     a JUnit XML report
${HELP_FOOTER}`;

const FLAGS = { update: { type: 'boolean' }, junit: { type: 'string' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('test', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  if (positionals.length === 0) fail('test: name at least one directory of test cases');
  const results: CaseResult[] = [];
  const cases = findCases(positionals);
  if (values.junit)
    checkOutputs(
      [{ flag: '--junit', path: values.junit }],
      cases.map((c) => ({ flag: 'test case', path: c.dir })),
    );
  for (const found of cases) {
    const r = await runCase(found, prepareCase, values.update ?? false);
    results.push(r);
    console.log(r.passed ? `${r.updated ? 'UPDATED' : 'PASS'} ${r.name}` : `FAIL ${r.name} (${r.dir})\n${r.failure}`);
  }
  if (values.junit) writeOutputFile(values.junit, junitReport(results));
  const failed = results.filter((r) => !r.passed).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
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
