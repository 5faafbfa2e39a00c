/**
 * Datapath regression cases, as Cilium's and Katran's packet-in/packet-out
 * fixtures: a directory holds the cluster state (`cluster.yaml` or
 * `cluster/`), the capture (`input.pcap` or `input.pcapng`), optional replay
 * flags (`args`, one line), optional cluster changes during the capture
 * (`events.jsonl`, as --events takes them) and what must come out
 * (`expected/verdicts.jsonl`, `expected/output.pcap` or `.pcapng`). A failing case says where it first
 * diverges, field by field.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { decodeCaptured, verifyCapturedChecksums } from '../../traces/frames.js';
import { openCapture, type CaptureRecord } from '../../traces/pcap.js';
import type { Compiled } from '../compile/compiler.js';
import type { Datapath } from './datapath.js';
import { inputError, isInputError } from '../common/errors.js';
import { replay } from './replay.js';
import { timelineOf, type ClusterChanges } from './cluster-sync.js';
import { commandLine, ReportCollector } from './report-data.js';
import type { RunReport } from './report-types.js';
import { buildSummary, readCounters } from './summary.js';

/**
 * Compiles a case's cluster with its replay flags (the CLI's own flag
 * handling); `argsFile` is where the flags came from, for messages.
 */
export type PrepareDatapath = (
  argv: string[],
  argsFile: string,
) => Promise<{ compiled: Compiled; dp: Datapath; changes?: ClusterChanges; eventsError?: Error }>;

export interface CaseResult {
  name: string;
  dir: string;
  passed: boolean;
  /** Why it failed, readable as it is. */
  failure?: string;
  seconds: number;
  updated?: boolean;
  /** With a report asked for: the case's replay as `--report` shows one. */
  run?: RunReport;
}

/** A case directory to run, or a path named as one that is none, with why. */
export interface FoundCase {
  dir: string;
  problem?: string;
}

/**
 * The case directories under the given paths: a directory with a case's files
 * is a case, else each of its subdirectories that has them. A path that is
 * neither comes back with its problem, to fail as a case does: a run reports
 * everything it was asked to run.
 */
export function findCases(paths: string[]): FoundCase[] {
  const found: FoundCase[] = [];
  for (const p of paths) {
    if (!existsSync(p)) found.push({ dir: p, problem: `${p}: no such directory` });
    else if (!isDirectory(p)) found.push({ dir: p, problem: `${p}: not a directory (name a case directory, or a directory of cases)` });
    else if (looksLikeCase(p)) found.push({ dir: p });
    else {
      const cases = subdirectories(p).filter(looksLikeCase);
      if (cases.length > 0) found.push(...cases.map((dir) => ({ dir })));
      else
        found.push({
          dir: p,
          problem: `${p}: holds no test case (a directory with input.pcap or input.pcapng, cluster.yaml and expected/)`,
        });
    }
  }
  return found;
}

/**
 * Any one of a case's own files makes a directory a case, so that one missing
 * its capture fails, saying so, instead of being passed over.
 */
function looksLikeCase(dir: string): boolean {
  return ['input.pcap', 'input.pcapng', 'cluster.yaml'].some((f) => existsSync(join(dir, f))) || isDirectory(join(dir, 'expected'));
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function subdirectories(dir: string): string[] {
  try {
    return readdirSync(dir)
      .sort()
      .map((d) => join(dir, d))
      .filter(isDirectory);
  } catch (e) {
    throw inputError([dir], `cannot list: ${(e as Error).message}`);
  }
}

/** A case file's text; an unreadable file is the case's fault, named. */
function readCaseFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw inputError([file], `cannot read: ${(e as Error).message}`);
  }
}

/** A case's replay flags: the `args` file, split on white space, with "double quotes" kept together. */
function caseArgs(file: string): string[] {
  if (!existsSync(file)) return [];
  return [
    ...readCaseFile(file)
      .trim()
      .matchAll(/"([^"]*)"|(\S+)/g),
  ].map((m) => m[1] ?? m[2]);
}

function caseFile(dir: string, names: string[]): string | undefined {
  return names.map((n) => join(dir, n)).find((p) => existsSync(p));
}

/**
 * Runs one case. A path with no case fails with its problem; a broken case
 * (a bad or missing manifest, capture, args or expected file) fails with one
 * line naming the file, like the CLI's errors; anything else thrown is a bug
 * in svcpath, and fails the case with its stack. Either way the run goes on
 * with the next case.
 */
export async function runCase({ dir, problem }: FoundCase, prepare: PrepareDatapath, update: boolean, report = false): Promise<CaseResult> {
  const started = performance.now();
  let run: RunReport | undefined;
  const result = (passed: boolean, failure?: string): CaseResult => ({
    name: basename(dir),
    dir,
    passed,
    failure,
    seconds: (performance.now() - started) / 1000,
    updated: update && passed,
    ...(run && { run }),
  });
  if (problem) return result(false, problem);
  try {
    const failure = await checkCase(dir, prepare, update, report ? (r) => (run = r) : undefined);
    return result(failure === undefined, failure);
  } catch (e) {
    return result(false, isInputError(e) ? e.message : `svcpath bug: ${(e as Error).stack ?? String(e)}`);
  }
}

/** Why the case fails, or undefined when it passes (or was updated); `onReport` takes the replay's report. */
async function checkCase(
  dir: string,
  prepare: PrepareDatapath,
  update: boolean,
  onReport?: (run: RunReport) => void,
): Promise<string | undefined> {
  const input = caseFile(dir, ['input.pcap', 'input.pcapng']);
  if (!input) throw inputError([join(dir, 'input.pcap')], 'missing (and there is no input.pcapng either): a case needs its capture');
  const cluster = caseFile(dir, ['cluster.yaml', 'cluster']);
  if (!cluster)
    throw inputError([join(dir, 'cluster.yaml')], 'missing (and there is no cluster/ directory either): a case needs its cluster state');
  const expectedDir = join(dir, 'expected');
  const expectedOutput = caseFile(expectedDir, ['output.pcap', 'output.pcapng']);
  const outName = expectedOutput ? basename(expectedOutput) : input.endsWith('.pcapng') ? 'output.pcapng' : 'output.pcap';
  const argsFile = join(dir, 'args');

  const work = mkdtempSync(join(tmpdir(), `svcpath-case-${basename(dir)}-`));
  try {
    const events = caseFile(dir, ['events.jsonl']);
    const argv = [...caseArgs(argsFile), '--cluster', cluster, ...(events ? ['--events', events] : [])];
    const { compiled, dp, changes, eventsError } = await prepare(argv, argsFile);
    if (eventsError) throw eventsError;
    const now = () => changes?.live.compiled ?? compiled;
    const report = onReport && new ReportCollector(dp, now, { traceCommand: commandLine('trace', [input, ...argv]) });
    const run = await replay(input, compiled, dp, { out: join(work, outName), verdicts: join(work, 'verdicts.jsonl'), changes, report });
    if (report) {
      const timeline = changes && timelineOf(changes);
      const notes = [...compiled.notes, ...run.notes];
      onReport!(report.finish(buildSummary(run, now(), readCounters(dp, now()), notes, run.warnings, timeline), timeline));
    }
    if (run.stoppedAt) return `the replay stopped at record ${run.stoppedAt.record}: ${run.stoppedAt.error}`;
    const verdicts = readFileSync(join(work, 'verdicts.jsonl'), 'utf8');
    const output = readFileSync(join(work, outName));
    if (update) {
      writeExpected(expectedDir, { 'verdicts.jsonl': verdicts, [outName]: output });
      return undefined;
    }
    const expectedVerdicts = join(expectedDir, 'verdicts.jsonl');
    if (!existsSync(expectedVerdicts) || !expectedOutput) {
      return 'no expected/verdicts.jsonl or expected/output.pcap(ng): run with --update to record them';
    }
    return (
      compareVerdicts(expectedVerdicts, readCaseFile(expectedVerdicts), verdicts) ??
      compareOutputs(expectedOutput, join(work, outName), verdicts)
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function writeExpected(expectedDir: string, files: Record<string, string | Buffer>): void {
  for (const [name, content] of Object.entries(files)) {
    const file = join(expectedDir, name);
    try {
      mkdirSync(expectedDir, { recursive: true });
      writeFileSync(file, content);
    } catch (e) {
      throw inputError([file], `cannot write: ${(e as Error).message}`);
    }
  }
}

/** The first packet whose verdict differs, field by field. */
function compareVerdicts(expectedFile: string, expected: string, actual: string): string | undefined {
  const want = expected.trim().split('\n').filter(Boolean);
  const got = actual.trim().split('\n').filter(Boolean);
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] === got[i]) continue;
    if (want[i] === undefined || got[i] === undefined) {
      return `packet ${i + 1}: ${want[i] === undefined ? 'not expected, but replayed' : 'expected, but the replay has no such packet'} (expected ${want.length} verdicts, got ${got.length})`;
    }
    const w = parseVerdict(expectedFile, i + 1, want[i]);
    const g = JSON.parse(got[i]) as Record<string, unknown>;
    const rows = Object.keys({ ...w, ...g })
      .filter((k) => JSON.stringify(w[k]) !== JSON.stringify(g[k]))
      .map((k) => [k, JSON.stringify(w[k]), JSON.stringify(g[k])]);
    return `packet ${i + 1}: verdict differs\n${table([['field', 'expected', 'actual'], ...rows])}`;
  }
  return undefined;
}

function parseVerdict(file: string, line: number, text: string): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text);
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // Said below, with where.
  }
  throw inputError(
    [file, `line ${line}`],
    `not a verdict (a JSON object per line): ${text.length > 60 ? `${text.slice(0, 60)}...` : text}`,
  );
}

/** Every record, its data copied as it is read: a reader's record data lasts only until the next record. */
function readRecords(path: string): CaptureRecord[] {
  const reader = openCapture(path);
  try {
    return Array.from(reader.records(), (r) => ({ ...r, data: r.data.slice() }));
  } finally {
    reader.close();
  }
}

/** The first output frame that differs, decoded side by side. */
function compareOutputs(expectedPath: string, actualPath: string, verdicts: string): string | undefined {
  const want = readRecords(expectedPath);
  const got = readRecords(actualPath);
  // The k-th output frame belongs to the k-th TX/REDIRECT verdict.
  const sent = verdicts
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { n: number; verdict: string })
    .filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT')
    .map((v) => v.n);
  for (let k = 0; k < Math.max(want.length, got.length); k++) {
    const w = want[k];
    const g = got[k];
    if (!w || !g) return `output frame ${k + 1}: expected ${want.length} frames, got ${got.length}`;
    const same =
      w.linktype === g.linktype &&
      w.tsSec === g.tsSec &&
      w.tsNsec === g.tsNsec &&
      w.origlen === g.origlen &&
      Buffer.from(w.data).equals(Buffer.from(g.data));
    if (same) continue;
    return `output frame ${k + 1} (packet ${sent[k] ?? '?'}) differs\n${frameDiff(w, g)}`;
  }
  return undefined;
}

/** A decoded frame as (field, value) rows: the link layer, IP, L4, payload. */
function frameFields(rec: CaptureRecord): Array<[string, string]> {
  const { linktype, ...decoded } = decodeCaptured(rec.linktype, rec.data);
  const rows: Array<[string, string]> = [
    ['linktype', String(linktype)],
    ['time', `${rec.tsSec}.${String(rec.tsNsec).padStart(9, '0')}`],
    ['caplen', String(rec.data.length)],
    ['origlen', String(rec.origlen)],
  ];
  const flatten = (prefix: string, v: unknown): void => {
    if (v === undefined) return;
    if (v instanceof Uint8Array) rows.push([prefix, Buffer.from(v).toString('hex') || '-']);
    else if (Array.isArray(v)) rows.push([prefix, JSON.stringify(v)]);
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(prefix ? `${prefix}.${k}` : k, x);
    else rows.push([prefix, typeof v === 'number' && /checksum/.test(prefix) ? `0x${v.toString(16).padStart(4, '0')}` : String(v)]);
  };
  flatten('', decoded);
  const sums = verifyCapturedChecksums(rec.linktype, rec.data);
  for (const [layer, ok] of [
    ['ipv4', sums.ipv4],
    ['l4', sums.l4],
  ] as const) {
    if (ok !== undefined) rows.push([`${layer} checksum`, ok === true ? 'valid' : ok === false ? 'INVALID' : String(ok)]);
  }
  return rows;
}

function frameDiff(want: CaptureRecord, got: CaptureRecord): string {
  const w = new Map(frameFields(want));
  const g = new Map(frameFields(got));
  const rows = [...new Set([...w.keys(), ...g.keys()])].map((k) => {
    const a = w.get(k) ?? '-';
    const b = g.get(k) ?? '-';
    return [k, a, b, a === b ? '' : '<<'];
  });
  const n = Math.min(want.data.length, got.data.length);
  let at = 0;
  while (at < n && want.data[at] === got.data[at]) at++;
  const byte = at < Math.max(want.data.length, got.data.length) ? `first differing byte at offset ${at}\n` : '';
  return `${byte}${table([['field', 'expected', 'actual', ''], ...rows])}`;
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map(
      (r) =>
        `  ${r
          .map((cell, c) => (cell ?? '').padEnd(widths[c]))
          .join('  ')
          .trimEnd()}`,
    )
    .join('\n');
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A JUnit XML report, as CI systems read them. */
export function junitReport(results: CaseResult[]): string {
  const failures = results.filter((r) => !r.passed).length;
  const seconds = results.reduce((t, r) => t + r.seconds, 0);
  const cases = results.map((r) => {
    const open = `    <testcase classname="svcpath" name="${xml(r.name)}" time="${r.seconds.toFixed(3)}"`;
    if (r.passed) return `${open}/>`;
    const first = r.failure!.split('\n')[0];
    return `${open}>\n      <failure message="${xml(first)}">${xml(r.failure!)}</failure>\n    </testcase>`;
  });
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="${results.length}" failures="${failures}" time="${seconds.toFixed(3)}">\n` +
    `  <testsuite name="svcpath" tests="${results.length}" failures="${failures}" time="${seconds.toFixed(3)}">\n` +
    `${cases.join('\n')}\n  </testsuite>\n</testsuites>\n`
  );
}
