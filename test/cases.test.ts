// The regression cases under test/cases/ through `svcpath test`, the same
// code users run; what a failing case looks like, whatever its link type; and
// broken cases, which fail one by one while the run goes on.
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { runCase } from '../control/runtime/testcases.js';
import { formatIpv4 } from '../traces/frames.js';
import { openCapture } from '../traces/pcap.js';
import { createPcapngWriter } from '../traces/pcapng.js';
import { cli, escapeRegExp } from './helpers.js';

const CASES = join(PROJECT_ROOT, 'test', 'cases');

async function svcpathTest(args: string[]): Promise<{ code: number; out: string }> {
  const { code, stdout } = await cli(['test', ...args]);
  return { code, out: stdout };
}

const tmp = () => mkdtempSync(join(tmpdir(), 'svcpath-cases-'));

describe('svcpath test', () => {
  it('passes every case of test/cases', async () => {
    const { code, out } = await svcpathTest([CASES]);
    expect(out).toMatch(/^4 passed, 0 failed$/m);
    expect(code).toBe(0);
  });

  it('fails a case whose expected output differs by one byte, showing the frame field by field, and goes on', async () => {
    const dir = tmp();
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
    expect(out).toContain(`FAIL clusterip-sample (${join(dir, 'clusterip-sample')})\noutput frame 1 (packet `);
    expect(out).toMatch(/\) differs\nfirst differing byte at offset 33\n/);
    expect(out).toMatch(/^ {2}ipv4\.dst +\S+ +\S+ +<<$/m);
    // The tampered expectation no longer checksums: the diff says so.
    expect(out).toMatch(/^ {2}ipv4 checksum +INVALID +valid +<<$/m);
    expect(out).toMatch(/^PASS cooked-pcapng$/m);
    expect(out).toMatch(/^3 passed, 1 failed$/m);
    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/^<\?xml version="1\.0" encoding="UTF-8"\?>\n<testsuites tests="4" failures="1"/);
    expect(xml.match(/<testcase /g)).toHaveLength(4);
    expect(xml).toMatch(
      /<testcase classname="svcpath" name="clusterip-sample" time="[\d.]+">\n {6}<failure message="output frame 1 \(packet \d+\) differs">/,
    );
    // Every element it opens, it closes.
    for (const tag of ['testsuites', 'testsuite', 'failure']) {
      expect(xml.match(new RegExp(`<${tag}[ >]`, 'g'))?.length).toBe(xml.match(new RegExp(`</${tag}>`, 'g'))?.length);
    }
  });

  it('decodes a differing Linux cooked frame as it decodes Ethernet: cooked header, IP, L4, checksums', async () => {
    const dir = tmp();
    cpSync(join(CASES, 'cooked-pcapng'), join(dir, 'cooked'), { recursive: true });
    const expectedOut = join(dir, 'cooked', 'expected', 'output.pcapng');
    const records = Array.from(openCapture(expectedOut).records(), (r) => ({ ...r, data: r.data.slice() }));
    expect(records[0].linktype).toBe(113);
    // The last byte of the IPv4 destination: a 16-byte cooked header, then the IPv4 header's bytes 16 to 19.
    const wanted = records[0].data.slice();
    wanted[16 + 19] ^= 1;
    const w = createPcapngWriter(expectedOut, { interfaces: [{ linktype: 113, tsresolNs: true }] });
    for (const [k, r] of records.entries()) w.write(0, r.tsSec, r.tsNsec, k === 0 ? wanted : r.data, r.origlen);
    w.close();

    const { code, out } = await svcpathTest([join(dir, 'cooked')]);
    expect(code).toBe(1);
    expect(out).toMatch(/\) differs\nfirst differing byte at offset 35\n/);
    const row = (field: string) =>
      out
        .split('\n')
        .find((l) => l.startsWith(`  ${field} `))
        ?.trim()
        .split(/ {2,}/);
    const dst = (data: Uint8Array) => formatIpv4(data, 16 + 16);
    expect(row('ipv4.dst')).toEqual(['ipv4.dst', dst(wanted), dst(records[0].data), '<<']);
    expect(row('linktype')).toEqual(['linktype', '113', '113']);
    expect(row('cooked.packetType')).toEqual(['cooked.packetType', '0', '0']);
    expect(row('ipv4 checksum')).toEqual(['ipv4 checksum', 'INVALID', 'valid', '<<']);
    for (const field of ['cooked.address', 'cooked.protocol', 'ipv4.src', 'l4 checksum']) expect(row(field), field).toBeDefined();
    expect(row('tcp.dport') ?? row('udp.dport'), 'the L4 header').toBeDefined();
    expect(out).not.toMatch(/^ {2}eth\./m);
  });

  it('shows a differing verdict field by field', async () => {
    const dir = tmp();
    cpSync(join(CASES, 'frontends-and-policies'), join(dir, 'one'), { recursive: true });
    const file = join(dir, 'one', 'expected', 'verdicts.jsonl');
    writeFileSync(file, readFileSync(file, 'utf8').replace('"snat":true', '"snat":false'));
    const { code, out } = await svcpathTest([join(dir, 'one')]);
    expect(code).toBe(1);
    expect(out).toMatch(/packet \d+: verdict differs\n {2}field +expected +actual\n {2}snat +false +true/);
  });

  it('--update records what the replay does now', async () => {
    const dir = tmp();
    cpSync(join(CASES, 'cooked-pcapng'), join(dir, 'fresh'), { recursive: true, filter: (src) => !src.includes('expected') });
    expect((await svcpathTest([join(dir, 'fresh')])).out).toMatch(/run with --update/);
    expect((await svcpathTest([join(dir, 'fresh'), '--update'])).out).toMatch(/^UPDATED fresh$/m);
    expect((await svcpathTest([join(dir, 'fresh')])).code).toBe(0);
    expect(openCapture(join(dir, 'fresh', 'expected', 'output.pcapng')).format).toBe('pcapng');
  });
});

describe('svcpath test on broken cases', () => {
  it('fails each broken case with its directory and the file at fault, counts it, and runs the others', async () => {
    const suite = tmp();
    const copy = (name: string) => {
      cpSync(join(CASES, 'frontends-and-policies'), join(suite, name), { recursive: true });
      return join(suite, name);
    };
    copy('a-good');
    writeFileSync(join(copy('bad-manifest'), 'cluster.yaml'), 'kind: Service\nmetadata: {name: web\n');
    rmSync(join(copy('no-capture'), 'input.pcap'));
    writeFileSync(join(copy('bad-flag'), 'args'), '--node node-a --clutser other.yaml\n');
    writeFileSync(join(copy('bad-value'), 'args'), '--node node-a --seed many\n');
    const cut = copy('cut-capture');
    const capture = readFileSync(join(cut, 'input.pcap'));
    writeFileSync(join(cut, 'input.pcap'), capture.subarray(0, capture.length - 10));
    const unreadable = copy('unreadable-expected');
    rmSync(join(unreadable, 'expected', 'verdicts.jsonl'));
    mkdirSync(join(unreadable, 'expected', 'verdicts.jsonl'));
    const garbled = copy('garbled-expected');
    const verdicts = readFileSync(join(garbled, 'expected', 'verdicts.jsonl'), 'utf8').split('\n');
    writeFileSync(join(garbled, 'expected', 'verdicts.jsonl'), ['{"n":1,', ...verdicts.slice(1)].join('\n'));
    mkdirSync(join(suite, 'notes')); // no case's files: not a case, passed over
    const nowhere = join(suite, 'nowhere');
    const junit = join(suite, 'report.xml');

    const { code, out } = await svcpathTest([suite, nowhere, '--junit', junit]);
    expect(code).toBe(1);
    const failure = (name: string, dir = join(suite, name)) =>
      out.match(new RegExp(`^FAIL ${name} \\(${escapeRegExp(dir)}\\)\\n(.*)$`, 'm'))?.[1];
    expect(out).toMatch(/^PASS a-good$/m);
    expect(failure('bad-manifest')).toMatch(new RegExp(`^${escapeRegExp(join(suite, 'bad-manifest', 'cluster.yaml'))}: `));
    expect(failure('no-capture')).toBe(
      `${join(suite, 'no-capture', 'input.pcap')}: missing (and there is no input.pcapng either): a case needs its capture`,
    );
    expect(failure('bad-flag')).toBe(`${join(suite, 'bad-flag', 'args')}: unknown flag --clutser (did you mean --cluster?)`);
    expect(failure('bad-value')).toBe(`${join(suite, 'bad-value', 'args')}: --seed: "many" is not a whole number`);
    expect(failure('cut-capture')).toMatch(
      new RegExp(`^the replay stopped at record \\d+: ${escapeRegExp(join(cut, 'input.pcap'))}: record \\d+ \\(offset \\d+\\): truncated`),
    );
    expect(failure('unreadable-expected')).toMatch(
      new RegExp(`^${escapeRegExp(join(unreadable, 'expected', 'verdicts.jsonl'))}: cannot read: .*EISDIR`),
    );
    expect(failure('garbled-expected')).toBe(
      `${join(garbled, 'expected', 'verdicts.jsonl')}: line 1: not a verdict (a JSON object per line): {"n":1,`,
    );
    expect(failure('nowhere', nowhere)).toBe(`${nowhere}: no such directory`);
    expect(out).not.toMatch(/notes/);
    expect(out).toMatch(/^1 passed, 8 failed$/m);

    const xml = readFileSync(junit, 'utf8');
    expect(xml).toMatch(/<testsuites tests="9" failures="8"/);
    for (const name of [
      'bad-manifest',
      'no-capture',
      'bad-flag',
      'bad-value',
      'cut-capture',
      'unreadable-expected',
      'garbled-expected',
      'nowhere',
    ]) {
      expect(xml).toMatch(new RegExp(`<testcase classname="svcpath" name="${name}" time="[\\d.]+">\\n {6}<failure message="`));
    }
  });

  it('fails a path that holds no case, and one that is a file, and goes on', async () => {
    const dir = tmp();
    mkdirSync(join(dir, 'empty', 'sub'), { recursive: true });
    writeFileSync(join(dir, 'file.txt'), 'not a case');
    const { code, out } = await svcpathTest([join(dir, 'empty'), join(dir, 'file.txt'), join(CASES, 'sctp-udp-nanosecond')]);
    expect(code).toBe(1);
    expect(out).toContain(`FAIL empty (${join(dir, 'empty')})\n${join(dir, 'empty')}: holds no test case`);
    expect(out).toContain(`FAIL file.txt (${join(dir, 'file.txt')})\n${join(dir, 'file.txt')}: not a directory`);
    expect(out).toMatch(/^PASS sctp-udp-nanosecond$/m);
    expect(out).toMatch(/^1 passed, 2 failed$/m);
  });

  it('fails a case on a bug in svcpath with the stack, instead of ending the run', async () => {
    const r = await runCase(
      { dir: join(CASES, 'sctp-udp-nanosecond') },
      async () => {
        throw new TypeError('something is undefined');
      },
      false,
    );
    expect(r).toMatchObject({ name: 'sctp-udp-nanosecond', passed: false });
    expect(r.failure).toMatch(/^svcpath bug: TypeError: something is undefined\n {4}at /);
  });
});
