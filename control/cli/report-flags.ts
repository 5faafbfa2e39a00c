/**
 * What the commands that write `--report FILE.html` share: the flag, the
 * command lines the report names (its own, and the `svcpath trace` command
 * that explains each flow), and the report's frame.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { svcpathVersion } from '../common/paths.js';
import { commandLine } from '../runtime/report-data.js';
import { REPORT_FORMAT, type ReportData } from '../runtime/report-types.js';

export const REPORT_OPTION = `  --report OUT.html                an HTML report that opens offline: charts of the verdicts, each Service's
                                   backends against their Maglev share, the capture's time, the first flows`;

export const REPORT_FLAG = { report: { type: 'string' } } as const;

/** The flags of a run that only name its outputs or threads: a trace of the same packets leaves them out. */
const NOT_FOR_TRACE = new Set(['out', 'verdicts', 'summary', 'report', 'workers', 'json', 'help']);

/**
 * `svcpath trace` on the same capture, cluster state and settings as the
 * replay whose flags are `argv` (parsed with `flags`): the flow table's rows
 * add their selection to it.
 */
export function traceCommandOf(argv: readonly string[], flags: NonNullable<ParseArgsConfig['options']>): string {
  const { tokens } = parseArgs({ args: [...argv], options: flags, strict: false, allowPositionals: true, tokens: true });
  const words: string[] = [];
  for (const token of tokens) {
    if (token.kind === 'positional') words.push(token.value);
    else if (token.kind === 'option' && !NOT_FOR_TRACE.has(token.name)) {
      words.push(token.rawName);
      if (token.value !== undefined) words.push(token.value);
    } else if (token.kind === 'option-terminator') words.push('--');
  }
  return commandLine('trace', words);
}

/** A report's frame: what made it, and how. */
export function reportFrame(command: string, argv: readonly string[]): Pick<ReportData, 'format' | 'generator' | 'command'> {
  return { format: REPORT_FORMAT, generator: `svcpath ${svcpathVersion()}`, command: commandLine(command, argv) };
}
