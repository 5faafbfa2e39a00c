// The regression cases under test/cases/ through `svcpath test`, the same
// code users run; and what a failing case looks like.
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { main } from '../control/main.js';
import { PROJECT_ROOT } from '../control/paths.js';
import { openCapture } from '../traces/pcap.js';

const CASES = join(PROJECT_ROOT, 'test', 'cases');

async function svcpathTest(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...a) => { lines.push(a.join(' ')); });
  try {
    return { code: await main(['test', ...args]), out: lines.join('\n') };
  } finally {
    log.mockRestore();
  }
}

describe('svcpath test', () => {
  it('passes every case of test/cases', async () => {
    const { code, out } = await svcpathTest([CASES]);
    expect(out).toMatch(/^4 passed, 0 failed$/m);
    expect(code).toBe(0);
  });

  it('fails a case whose expected output differs by one byte, showing the frame field by field, and goes on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-cases-'));
    cpSync(CASES, dir, { recursive: true });
    const expectedOut = join(dir, 'clusterip-sample', 'expected', 'output.pcap');
    const bytes = readFileSync(expectedOut);
    // The destination address of the first output frame (24-byte global header, 16-byte record header, 14-byte Ethernet).
    const at = 24 + 16 + 14 + 19;
    bytes[at] ^= 1;
    writeFileSync(expectedOut, bytes);
    const junit = join(dir, 'report.xml');
    const { code, out } = await svcpathTest([dir, '--junit', junit]);
    expect(code).toBe(1);
    expect(out).toMatch(/^FAIL clusterip-sample\noutput frame 1 \(packet \d+\) differs\nfirst differing byte at offset 33\n/m);
    expect(out).toMatch(/^ {2}ipv4\.dst +\S+ +\S+ +<<$/m);
    // The tampered expectation no longer checksums: the diff says so.
    expect(out).toMatch(/^ {2}ipv4 checksum +INVALID +valid +<<$/m);
    expect(out).toMatch(/^PASS cooked-pcapng$/m);
    expect(out).toMatch(/^3 passed, 1 failed$/m);
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites tests="4" failures="1"/);
    expect(xml.match(/<testcase /g)).toHaveLength(4);
    expect(xml).toMatch(/<testcase classname="svcpath" name="clusterip-sample" time="[\d.]+">\n {6}<failure message="output frame 1 \(packet \d+\) differs">/);
    // Every element it opens, it closes.
    for (const tag of ['testsuites', 'testsuite', 'failure']) {
      expect(xml.match(new RegExp(`<${tag}[ >]`, 'g'))?.length).toBe(xml.match(new RegExp(`</${tag}>`, 'g'))?.length);
    }
  });

  it('shows a differing verdict field by field', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-cases-'));
    cpSync(join(CASES, 'frontends-and-policies'), join(dir, 'one'), { recursive: true });
    const file = join(dir, 'one', 'expected', 'verdicts.jsonl');
    writeFileSync(file, readFileSync(file, 'utf8').replace('"snat":true', '"snat":false'));
    const { code, out } = await svcpathTest([join(dir, 'one')]);
    expect(code).toBe(1);
    expect(out).toMatch(/packet \d+: verdict differs\n {2}field +expected +actual\n {2}snat +false +true/);
  });

  it('--update records what the replay does now', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'svcpath-cases-'));
    cpSync(join(CASES, 'cooked-pcapng'), join(dir, 'fresh'), { recursive: true, filter: (src) => !src.includes('expected') });
    expect((await svcpathTest([join(dir, 'fresh')])).out).toMatch(/run with --update/);
    expect((await svcpathTest([join(dir, 'fresh'), '--update'])).out).toMatch(/^UPDATED fresh$/m);
    expect((await svcpathTest([join(dir, 'fresh')])).code).toBe(0);
    expect(openCapture(join(dir, 'fresh', 'expected', 'output.pcapng')).format).toBe('pcapng');
  });
});
