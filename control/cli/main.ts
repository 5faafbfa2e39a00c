/**
 * svcpath's command line: which command a word names, `help`, `--version`,
 * and the one place a user's mistake becomes its one line. Each command's
 * help, flags and work are in commands/<command>.ts. User mistakes
 * (isInputError: an InputError, or a CaptureError from traces/) print one
 * line naming the file, record or object and field, and exit 1; anything
 * else is a bug and prints its stack.
 */
import { isInputError } from '../common/errors.js';
import { svcpathVersion } from '../common/paths.js';
import { closest, didYouMean } from '../common/suggest.js';
import { Interrupted, SIGNAL_EXIT_STATUS } from '../runtime/replay.js';
import { fail, printHelp } from './common-flags.js';
import * as diff from './commands/diff.js';
import * as dns from './commands/dns.js';
import * as endpoints from './commands/endpoints.js';
import * as env from './commands/env.js';
import * as maps from './commands/maps.js';
import * as replay from './commands/replay.js';
import * as services from './commands/services.js';
import * as test from './commands/test.js';
import * as trace from './commands/trace.js';

/** What every commands/<command>.ts exports: its help, and its run on the arguments after its name, to an exit status. */
interface Command {
  HELP: string;
  run(argv: string[]): Promise<number>;
}

/** The commands by name, in the overview's order (did-you-mean lists equally close ones in this order). */
const COMMANDS: Record<string, Command> = { replay, trace, diff, test, services, endpoints, env, dns, maps };

const OVERVIEW = `svcpath — replay captured packets through an eBPF/XDP-style Kubernetes Service datapath

Usage:
  svcpath replay <trace.pcap|trace.pcapng|-> --cluster <file-or-dir> [--cluster ...] [flags]
  svcpath trace <trace> --cluster <file-or-dir> [--packet N]... [--flow IP:PORT]... [--service NS/NAME[:PORT]]... [--json]
  svcpath diff <trace> --cluster <before> [--cluster ...] --against <after> [--against ...] [flags] [--json]
  svcpath test <case-dir>... [--update] [--junit FILE]
  svcpath services --cluster <file-or-dir> [--cluster ...] [--json]
  svcpath endpoints --cluster <file-or-dir> [--cluster ...] [-o yaml|json] [--legacy]
  svcpath env --cluster <file-or-dir> [--cluster ...] --namespace NS [--enable-service-links=false] [--json]
  svcpath dns --cluster <file-or-dir> [--cluster ...] [--domain D] [--query NAME [--type T] [--from-namespace NS]] [--json]
  svcpath maps --cluster <file-or-dir> [--cluster ...] [flags] [--json]
  svcpath --version

Commands:
  replay      a verdict per packet, the rewritten frames and a summary
  trace       what the datapath did with chosen packets, step by step
  diff        the flows whose decision changes between two cluster states
  test        regression cases: capture, cluster state and expected output in a directory
  services    every Service after allocation, like kubectl get svc -A -o wide
  endpoints   the EndpointSlices derived from the Pods, like kubectl get endpointslices -A
  env         the Service environment variables of a Pod created now
  dns         the cluster DNS's records for Services, or how one name resolves
  maps        the compiled maps, like bpftool map dump

svcpath <command> --help (or svcpath help <command>) lists the command's flags.

Exit status: 0 on success, 1 on bad input (the message names file, record or object, and field).`;

export async function main(argv: string[]): Promise<number> {
  const [word, ...rest] = argv;
  try {
    switch (word) {
      case undefined:
        console.log(OVERVIEW);
        return 1;
      case '--help':
      case '-h':
      case 'help':
        return helpCommand(rest);
      case '--version':
      case '-V':
        console.log(`svcpath ${svcpathVersion()}`);
        return 0;
      default:
        return await commandNamed(word).run(rest);
    }
  } catch (e) {
    if (isInputError(e)) {
      console.error(`svcpath: ${e.message}`);
      return 1;
    }
    if (e instanceof Interrupted) {
      console.error(`svcpath: ${e.message}`);
      return SIGNAL_EXIT_STATUS[e.signal] ?? 130;
    }
    throw e;
  }
}

/** `svcpath help [command]`: the overview, or that command's help. */
function helpCommand(argv: string[]): number {
  const [word] = argv;
  if (word === undefined) {
    console.log(OVERVIEW);
    return 0;
  }
  return printHelp(commandNamed(word).HELP);
}

/** The command a word names; for any other word, one line with the closest command. */
function commandNamed(word: string): Command {
  if (Object.hasOwn(COMMANDS, word)) return COMMANDS[word];
  if (word.startsWith('-'))
    fail(`${word}: not a command; flags come after the command (svcpath <command> [flags]; svcpath --help lists the commands)`);
  fail(`unknown command "${word}"${didYouMean(closest(word, Object.keys(COMMANDS))) || ' (svcpath --help lists the commands)'}`);
}
