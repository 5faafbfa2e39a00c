/** `svcpath maps`: the compiled maps, like bpftool map dump. */
import { dumpMaps, formatMapDump } from '../../runtime/maps-dump.js';
import { parseCommandArgs } from '../args.js';
import { buildDatapath, CLUSTER_OPTIONS, DATAPATH_FLAGS, DATAPATH_OPTIONS, HELP_FOOTER, noArguments, printHelp } from '../common-flags.js';

export const HELP = `svcpath maps: the compiled maps, like bpftool map dump (Maglev tables as slots per backend)

Usage:
  svcpath maps --cluster <file-or-dir> [--cluster ...] [flags]

Flags:
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
  --json                           the maps as JSON
${HELP_FOOTER}`;

const FLAGS = { ...DATAPATH_FLAGS, json: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('maps', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('maps', positionals);
  const { dp } = await buildDatapath(values);
  const dumps = dumpMaps(dp);
  console.log(values.json ? JSON.stringify(dumps, null, 2) : formatMapDump(dumps));
  return 0;
}
