/**
 * `svcpath replay`: a capture through the datapath, on one thread or sharded
 * over several: a verdict per packet, the rewritten frames and a summary.
 */
import { STDOUT, writeOutputFile } from '../../../traces/chunked.js';
import { checkOutputs } from '../../common/paths.js';
import { replay, SIGNAL_EXIT_STATUS, stopOnSignals, type ReplayResult } from '../../runtime/replay.js';
import { replaySharded } from '../../runtime/sharded-replay.js';
import { buildSummary, formatSummary, nothingDecided, readCounters, type Counters } from '../../runtime/summary.js';
import { timelineOf } from '../../runtime/cluster-sync.js';
import { ReportCollector } from '../../runtime/report-data.js';
import { parseCommandArgs } from '../args.js';
import { readReportAssets, writeReport } from '../report-file.js';
import { REPORT_FLAG, REPORT_OPTION, reportFrame, traceCommandOf } from '../report-flags.js';
import {
  buildReplayDatapath,
  CLUSTER_OPTIONS,
  compileFromFlags,
  DATAPATH_FLAGS,
  DATAPATH_OPTIONS,
  EVENTS_FLAGS,
  EVENTS_OPTIONS,
  fail,
  HELP_FOOTER,
  oneTrace,
  parseInteger,
  printHelp,
} from '../common-flags.js';

export const HELP = `svcpath replay: replay a capture through the datapath: a verdict per packet, the rewritten frames, a summary

Usage:
  svcpath replay <trace.pcap|trace.pcapng|-> --cluster <file-or-dir> [--cluster ...] [flags]

The capture - is standard input (tcpdump -w - ... | svcpath replay - ...); gzip is read as it is,
whatever the name. An output - is standard output, and the summary then goes to stderr. Ctrl-C (or
SIGTERM) ends the replay at a batch boundary with what was processed written: exit status 130 (143).

Flags:
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${EVENTS_OPTIONS}
  --out OUT.pcap|OUT.pcapng|-      write the TX and REDIRECT frames, rewritten, in input order
  --verdicts OUT.jsonl|-           one JSON verdict per input packet
  --summary OUT.json|-             the summary as JSON
${REPORT_OPTION}
  --workers N                      replay on N threads, each with its own maps, flows sharded by client
                                   (same output as one worker; default 1; not with a capture from a pipe)
${HELP_FOOTER}`;

const FLAGS = {
  ...DATAPATH_FLAGS,
  ...EVENTS_FLAGS,
  out: { type: 'string' },
  verdicts: { type: 'string' },
  summary: { type: 'string' },
  ...REPORT_FLAG,
  workers: { type: 'string' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('replay', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  const trace = oneTrace('replay', positionals);
  const outputFlags = (['out', 'verdicts', 'summary', 'report'] as const)
    .filter((f) => values[f] !== undefined)
    .map((f) => ({ flag: `--${f}`, path: values[f]! }));
  checkOutputs(
    outputFlags,
    [
      { flag: 'capture', path: trace },
      ...(values.cluster ?? []).map((path) => ({ flag: '--cluster', path })),
      ...(values.events === undefined ? [] : [{ flag: '--events', path: values.events }]),
    ],
    ['--out'],
  );
  const workers = values.workers === undefined ? 1 : parseInteger('--workers', values.workers, 1, 64);
  if (workers > 1 && values.events !== undefined) {
    fail('--workers: one worker only with --events: cluster changes are applied to the maps of one datapath');
  }
  if (workers > 1 && values.report !== undefined) {
    fail('--workers: one worker only with --report: its census of live flows walks the maps of one datapath');
  }
  // A page that is not built is said before the replay, not after it.
  if (values.report !== undefined) readReportAssets();
  // Sharded, each worker loads its own datapath.
  const { state, resolved, compiled, ctEntries, dp, changes, eventsError } =
    workers > 1
      ? { ...compileFromFlags(values), dp: undefined, changes: undefined, eventsError: undefined }
      : await buildReplayDatapath(values, trace);
  const report =
    dp && values.report !== undefined
      ? new ReportCollector(dp, () => changes?.live.compiled ?? compiled, { traceCommand: traceCommandOf(argv, FLAGS) })
      : undefined;
  const bar = progressBar();
  const signals = stopOnSignals();
  const outputs = {
    out: values.out,
    verdicts: values.verdicts,
    signal: signals.signal,
    onProgress: (done: number, total: number | undefined, packets: number) => bar.update(done, total, packets),
  };
  let replayed: { result: ReplayResult; counters: Counters };
  try {
    if (!dp) {
      replayed = await replaySharded(trace, compiled, { ...outputs, workers, ctEntries });
    } else {
      const result = await replay(trace, compiled, dp, { ...outputs, changes, report });
      replayed = { result, counters: readCounters(dp, changes?.live.compiled ?? compiled) };
    }
    bar.end();
    const { result, counters } = replayed;
    const notes = [...state.notes, ...resolved.notes, ...compiled.notes, ...result.notes];
    const timeline = changes && timelineOf(changes);
    const summary = buildSummary(result, changes?.live.compiled ?? compiled, counters, notes, state.warnings, timeline);
    if (values.summary) writeOutputFile(values.summary, `${JSON.stringify(summary, null, 2)}\n`);
    if (report) writeReport(values.report!, { ...reportFrame('replay', argv), run: report.finish(summary, timeline) });
    // Standard output carries an output: the summary for people goes to stderr.
    (outputFlags.some((o) => o.path === STDOUT) ? console.error : console.log)(formatSummary(summary));
    if (result.interrupted) return SIGNAL_EXIT_STATUS[result.interrupted.signal] ?? 130;
    if (result.stoppedAt) {
      console.error(`svcpath: ${result.stoppedAt.error}`);
      return 1;
    }
    // The events before the file's mistake were applied; the mistake is reported as a broken capture's is.
    if (eventsError) {
      console.error(`svcpath: ${eventsError.message}`);
      return 1;
    }
    const undecided = nothingDecided(result, summary);
    if (undecided) {
      console.error(`svcpath: ${undecided}`);
      return 1;
    }
    return 0;
  } finally {
    signals.release();
  }
}

/** A progress bar on stderr, only when it is a terminal; packets only when the capture's size is unknown (a pipe). */
function progressBar(): { update(done: number, total: number | undefined, packets: number): void; end(): void } {
  if (!process.stderr.isTTY) return { update() {}, end() {} };
  let last = -1;
  return {
    update(done, total, packets) {
      if (total === undefined) {
        last = packets;
        process.stderr.write(`\r${packets} packets`);
        return;
      }
      const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
      if (pct === last) return;
      last = pct;
      const width = 30;
      const full = Math.round((pct / 100) * width);
      process.stderr.write(`\r[${'#'.repeat(full)}${' '.repeat(width - full)}] ${String(pct).padStart(3)}%  ${packets} packets`);
    },
    end() {
      if (last >= 0) process.stderr.write('\r\x1b[K');
    },
  };
}
