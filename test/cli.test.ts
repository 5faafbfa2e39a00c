// The command line itself: a mistyped flag or command gets one line with the
// closest right one, each command has its own help listing exactly the flags
// it takes, --version says the package's version.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { cli } from './helpers.js';

const COMMANDS = ['replay', 'trace', 'diff', 'test', 'services', 'endpoints', 'env', 'dns', 'maps'];

/** A mistake: exit 1, nothing on stdout, exactly one line on stderr. */
async function mistake(args: string[]): Promise<string> {
  const r = await cli(args);
  expect(r.code, args.join(' ')).toBe(1);
  expect(r.stdout, args.join(' ')).toBe('');
  expect(r.stderr.split('\n'), args.join(' ')).toHaveLength(1);
  return r.stderr;
}

/** The long flags a help text names. */
function flagsOf(help: string): Set<string> {
  return new Set(help.match(/--[a-z][a-z0-9-]*/g));
}

describe('a mistyped flag', () => {
  it.each([
    [['replay', 'x.pcap', '--clutser', 'c.yaml'], 'svcpath: replay: unknown flag --clutser (did you mean --cluster?)'],
    [['services', '--jsno'], 'svcpath: services: unknown flag --jsno (did you mean --json?)'],
    [['trace', 'x.pcap', '--flwo', '10.96.0.10:80'], 'svcpath: trace: unknown flag --flwo (did you mean --flow?)'],
    [['dns', '--qeury', 'web'], 'svcpath: dns: unknown flag --qeury (did you mean --query?)'],
    [['test', 'cases', '--junti', 'r.xml'], 'svcpath: test: unknown flag --junti (did you mean --junit?)'],
    [['maps', '--masq'], 'svcpath: maps: unknown flag --masq (did you mean --masquerade-all or --masquerade-address?)'],
    [['diff', 'x.pcap', '--agianst', 'b.yaml'], 'svcpath: diff: unknown flag --agianst (did you mean --against?)'],
    [['endpoints', '--Legacy'], 'svcpath: endpoints: unknown flag --Legacy (did you mean --legacy?)'],
  ])('%j', async (args, line) => {
    expect(await mistake(args)).toBe(line);
  });

  it("suggests nothing when nothing is close, and only the command's own flags", async () => {
    expect(await mistake(['replay', 'x.pcap', '--frobnicate'])).toBe('svcpath: replay: unknown flag --frobnicate');
    // --out is replay's; services has nothing like it.
    expect(await mistake(['services', '--out', 'x'])).toBe('svcpath: services: unknown flag --out');
    expect(await mistake(['env', '-x'])).toBe('svcpath: env: unknown flag -x');
  });

  it('a missing value or a value where none is taken: one line naming the flag', async () => {
    expect(await mistake(['replay', 'x.pcap', '--cluster'])).toBe('svcpath: replay: --cluster needs a value');
    expect(await mistake(['maps', '--json=yes'])).toBe('svcpath: maps: --json takes no value (got "yes")');
    expect(await mistake(['replay', 'x.pcap', '--cluster', '--node', 'a'])).toBe(
      'svcpath: replay: --cluster needs a value (--node looks like a flag; if it is the value, write --cluster=--node)',
    );
  });
});

describe('a mistyped command', () => {
  it('gets the closest command', async () => {
    expect(await mistake(['replya', 'x.pcap'])).toBe('svcpath: unknown command "replya" (did you mean replay?)');
    expect(await mistake(['servics'])).toBe('svcpath: unknown command "servics" (did you mean services?)');
    expect(await mistake(['frobnicate'])).toBe('svcpath: unknown command "frobnicate" (svcpath --help lists the commands)');
    expect(await mistake(['help', 'trcae'])).toBe('svcpath: unknown command "trcae" (did you mean trace?)');
    expect(await mistake(['--cluster', 'c.yaml', 'services'])).toBe(
      'svcpath: --cluster: not a command; flags come after the command (svcpath <command> [flags]; svcpath --help lists the commands)',
    );
  });
});

describe('help', () => {
  it('svcpath --help is an overview naming every command; svcpath alone prints it and exits 1', async () => {
    const help = await cli(['--help']);
    expect(help.code).toBe(0);
    for (const command of COMMANDS) expect(help.stdout).toMatch(new RegExp(`^ {2}${command} +\\S`, 'm'));
    expect(await cli(['help'])).toEqual(help);
    expect(await cli(['-h'])).toEqual(help);
    expect(await cli([])).toEqual({ ...help, code: 1 });
  });

  it.each(COMMANDS)("svcpath %s --help prints that command's help, as -h and svcpath help do", async (command) => {
    const help = await cli([command, '--help']);
    expect([help.code, help.stderr]).toEqual([0, '']);
    expect(help.stdout).toMatch(new RegExp(`^svcpath ${command}: `));
    expect(help.stdout).toMatch(new RegExp(`^Usage:\\n {2}svcpath ${command} `, 'm'));
    expect(await cli([command, '-h'])).toEqual(help);
    expect(await cli(['help', command])).toEqual(help);
  });

  it("each command's help lists exactly the flags the command takes", async () => {
    const helps = new Map<string, string>();
    for (const command of COMMANDS) helps.set(command, (await cli([command, '--help'])).stdout);
    const everyFlag = new Set([...helps.values()].flatMap((h) => [...flagsOf(h)]));
    for (const [command, help] of helps) {
      const listed = flagsOf(help);
      for (const flag of everyFlag) {
        // A flag the command takes fails, if at all, for another reason than being unknown.
        const { stderr } = await cli([command, flag]);
        expect(stderr.includes(`unknown flag ${flag}`), `${command} ${flag}: listed ${listed.has(flag)}, stderr ${stderr}`).toBe(
          !listed.has(flag),
        );
      }
    }
    // Not all the same flags: per-command help, not one text.
    expect(flagsOf(helps.get('test')!)).not.toContain('--cluster');
    expect(flagsOf(helps.get('services')!)).not.toContain('--out');
    expect(flagsOf(helps.get('replay')!)).toContain('--workers');
  });
});

describe('--version', () => {
  it("prints svcpath and package.json's version", async () => {
    const { version } = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(await cli(['--version'])).toEqual({ code: 0, stdout: `svcpath ${version}`, stderr: '' });
    expect(await cli(['-V'])).toEqual({ code: 0, stdout: `svcpath ${version}`, stderr: '' });
  });
});
