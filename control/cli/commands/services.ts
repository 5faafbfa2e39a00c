/** `svcpath services`: every Service after allocation, like kubectl get svc -A -o wide. */
import { parseCommandArgs } from '../args.js';
import { formatServicesTable, serviceRows } from '../services-table.js';
import { CLUSTER_FLAGS, CLUSTER_OPTIONS, HELP_FOOTER, loadState, noArguments, printHelp } from '../shared-flags.js';

export const HELP = `svcpath services: every Service after allocation, like kubectl get svc -A -o wide, with endpoints,
traffic policies and session affinity

Usage:
  svcpath services --cluster <file-or-dir> [--cluster ...] [flags]

Flags:
${CLUSTER_OPTIONS}
  --json                           the Services as JSON: typed values, one object per Service
${HELP_FOOTER}`;

const FLAGS = { ...CLUSTER_FLAGS, json: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('services', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('services', positionals);
  const { state } = loadState(values);
  console.log(values.json ? JSON.stringify(serviceRows(state), null, 2) : formatServicesTable(state, { wide: true }));
  return 0;
}
