/**
 * Datapath regression cases, as Cilium's and Katran's packet-in/packet-out
 * fixtures: a directory holds the cluster state (`cluster.yaml` or
 * `cluster/`), the capture (`input.pcap` or `input.pcapng`), optional replay
 * flags (`args`, one line) and what must come out (`expected/verdicts.jsonl`,
 * `expected/output.pcap` or `.pcapng`). A failing case says where it first
 * diverges, field by field.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { decodeFrame, verifyChecksums } from '../traces/frames.js';
import { openCapture, type CaptureRecord } from '../traces/pcap.js';
import type { Compiled } from './compiler.js';
import type { Datapath } from './datapath.js';
import { inputError } from './errors.js';
import { replay } from './replay.js';

/** Compiles a case's cluster with its replay flags (the CLI's own flag handling). */
export type PrepareDatapath = (argv: string[]) => Promise<{ compiled: Compiled; dp: Datapath }>;

export interface CaseResult {
  name: string;
  dir: string;
  passed: boolean;
  /** Why it failed, readable as it is. */
  failure?: string;
  seconds: number;
  updated?: boolean;
}

/** The case directories under the given paths: a path holding input.pcap(ng) is a case, else each subdirectory that does. */
export function findCases(paths: string[]): string[] {
  const isCase = (dir: string) => existsSync(join(dir, 'input.pcap')) || existsSync(join(dir, 'input.pcapng'));
  const cases: string[] = [];
  for (const p of paths) {
    if (!existsSync(p) || !statSync(p).isDirectory()) throw inputError([p], 'not a directory of test cases');
    if (isCase(p)) {
      cases.push(p);
      continue;
    }
    const found = readdirSync(p).sort().map((d) => join(p, d)).filter((d) => statSync(d).isDirectory() && isCase(d));
    if (found.length === 0) throw inputError([p], 'holds no test case (a directory with input.pcap or input.pcapng)');
    cases.push(...found);
  }
  return cases;
}

/** A case's replay flags: the `args` file, split on white space, with "double quotes" kept together. */
function caseArgs(dir: string): string[] {
  const file = join(dir, 'args');
  if (!existsSync(file)) return [];
  return [...readFileSync(file, 'utf8').trim().matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

function caseFile(dir: string, names: string[]): string | undefined {
  return names.map((n) => join(dir, n)).find((p) => existsSync(p));
}

export async function runCase(dir: string, prepare: PrepareDatapath, update: boolean): Promise<CaseResult> {
  const started = performance.now();
  const name = basename(dir);
  const result = (passed: boolean, failure?: string): CaseResult =>
    ({ name, dir, passed, failure, seconds: (performance.now() - started) / 1000, updated: update && passed });
  const input = caseFile(dir, ['input.pcap', 'input.pcapng'])!;
  const cluster = caseFile(dir, ['cluster.yaml', 'cluster']);
  if (!cluster) throw inputError([dir], 'no cluster.yaml or cluster/ directory');
  const expectedDir = join(dir, 'expected');
  const expectedOutput = caseFile(expectedDir, ['output.pcap', 'output.pcapng']);
  const outName = expectedOutput ? basename(expectedOutput) : input.endsWith('.pcapng') ? 'output.pcapng' : 'output.pcap';

  const work = mkdtempSync(join(tmpdir(), `svcpath-case-${name}-`));
  try {
    const { compiled, dp } = await prepare([...caseArgs(dir), '--cluster', cluster]);
    const run = replay(input, compiled, dp, { out: join(work, outName), verdicts: join(work, 'verdicts.jsonl') });
    if (run.stoppedAt) return result(false, `the replay stopped at record ${run.stoppedAt.record}: ${run.stoppedAt.error}`);
    const verdicts = readFileSync(join(work, 'verdicts.jsonl'), 'utf8');
    const output = readFileSync(join(work, outName));
    if (update) {
      mkdirSync(expectedDir, { recursive: true });
      writeFileSync(join(expectedDir, 'verdicts.jsonl'), verdicts);
      writeFileSync(join(expectedDir, outName), output);
      return result(true);
    }
    const expectedVerdicts = join(expectedDir, 'verdicts.jsonl');
    if (!existsSync(expectedVerdicts) || !expectedOutput) {
      return result(false, 'no expected/verdicts.jsonl or expected/output.pcap(ng): run with --update to record them');
    }
    const verdictDiff = compareVerdicts(readFileSync(expectedVerdicts, 'utf8'), verdicts);
    if (verdictDiff) return result(false, verdictDiff);
    const outputDiff = compareOutputs(expectedOutput, join(work, outName), verdicts);
    return outputDiff ? result(false, outputDiff) : result(true);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The first packet whose verdict differs, field by field. */
function compareVerdicts(expected: string, actual: string): string | undefined {
  const want = expected.trim().split('\n').filter(Boolean);
  const got = actual.trim().split('\n').filter(Boolean);
  for (let i = 0; i < Math.max(want.length, got.length); i++) {
    if (want[i] === got[i]) continue;
    if (want[i] === undefined || got[i] === undefined) {
      return `packet ${i + 1}: ${want[i] === undefined ? 'not expected, but replayed' : 'expected, but the replay has no such packet'} (expected ${want.length} verdicts, got ${got.length})`;
    }
    const w = JSON.parse(want[i]) as Record<string, unknown>;
    const g = JSON.parse(got[i]) as Record<string, unknown>;
    const rows = Object.keys({ ...w, ...g })
      .filter((k) => JSON.stringify(w[k]) !== JSON.stringify(g[k]))
      .map((k) => [k, JSON.stringify(w[k]), JSON.stringify(g[k])]);
    return `packet ${i + 1}: verdict differs\n${table([['field', 'expected', 'actual'], ...rows])}`;
  }
  return undefined;
}

function readRecords(path: string): CaptureRecord[] {
  return [...openCapture(path).records()].map((r) => ({ ...r, data: r.data.slice() }));
}

/** The first output frame that differs, decoded side by side. */
function compareOutputs(expectedPath: string, actualPath: string, verdicts: string): string | undefined {
  const want = readRecords(expectedPath);
  const got = readRecords(actualPath);
  // The k-th output frame belongs to the k-th TX/REDIRECT verdict.
  const sent = verdicts.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n: number; verdict: string })
    .filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT').map((v) => v.n);
  for (let k = 0; k < Math.max(want.length, got.length); k++) {
    const w = want[k];
    const g = got[k];
    if (!w || !g) return `output frame ${k + 1}: expected ${want.length} frames, got ${got.length}`;
    const same = w.linktype === g.linktype && w.tsSec === g.tsSec && w.tsNsec === g.tsNsec && w.origlen === g.origlen
      && Buffer.from(w.data).equals(Buffer.from(g.data));
    if (same) continue;
    return `output frame ${k + 1} (packet ${sent[k] ?? '?'}) differs\n${frameDiff(w, g)}`;
  }
  return undefined;
}

/** A decoded frame as (field, value) rows: Ethernet, IP, L4, payload. */
function frameFields(rec: CaptureRecord): Array<[string, string]> {
  const rows: Array<[string, string]> = [
    ['linktype', String(rec.linktype)], ['time', `${rec.tsSec}.${String(rec.tsNsec).padStart(9, '0')}`],
    ['caplen', String(rec.data.length)], ['origlen', String(rec.origlen)],
  ];
  if (rec.linktype !== 1) return rows;
  const flatten = (prefix: string, v: unknown): void => {
    if (v === undefined) return;
    if (v instanceof Uint8Array) rows.push([prefix, Buffer.from(v).toString('hex') || '-']);
    else if (Array.isArray(v)) rows.push([prefix, JSON.stringify(v)]);
    else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) flatten(prefix ? `${prefix}.${k}` : k, x);
    else rows.push([prefix, typeof v === 'number' && /checksum/.test(prefix) ? `0x${v.toString(16).padStart(4, '0')}` : String(v)]);
  };
  flatten('', decodeFrame(rec.data));
  const sums = verifyChecksums(rec.data);
  for (const [layer, ok] of [['ipv4', sums.ipv4], ['l4', sums.l4]] as const) {
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
  return rows.map((r) => `  ${r.map((cell, c) => (cell ?? '').padEnd(widths[c])).join('  ').trimEnd()}`).join('\n');
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
  return `<?xml version="1.0" encoding="UTF-8"?>\n<testsuites tests="${results.length}" failures="${failures}" time="${seconds.toFixed(3)}">\n`
    + `  <testsuite name="svcpath" tests="${results.length}" failures="${failures}" time="${seconds.toFixed(3)}">\n`
    + `${cases.join('\n')}\n  </testsuite>\n</testsuites>\n`;
}
