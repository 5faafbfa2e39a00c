/** `svcpath services`: every Service after allocation, like kubectl get svc -A -o wide. */
import { emulatedNode } from '../../compile/compiler.js';
import { parseCommandArgs } from '../args.js';
import { formatServicesTable, serviceRows } from '../services-table.js';
import { CLUSTER_FLAGS, CLUSTER_OPTIONS, HELP_FOOTER, loadState, noArguments, printHelp } from '../common-flags.js';

export const HELP = `svcpath services: every Service after allocation, like kubectl get svc -A -o wide, with endpoints,
traffic policies and session affinity

Usage:
  svcpath services --cluster <file-or-dir> [--cluster ...] [flags]

Flags:
${CLUSTER_OPTIONS}
  --node NAME                      the Node whose kube-proxy's view TOPOLOGY shows: which topology hints
                                   it uses and why not (optional with one Node; without it, what each
                                   Service asks for)
  --json                           the Services as JSON: typed values, one object per Service
${HELP_FOOTER}`;

const FLAGS = { ...CLUSTER_FLAGS, node: { type: 'string' }, json: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('services', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('services', positionals);
  const { state } = loadState(values);
  const node = values.node === undefined ? undefined : emulatedNode(state, values.node);
  console.log(values.json ? JSON.stringify(serviceRows(state, { node }), null, 2) : formatServicesTable(state, { wide: true, node }));
  return 0;
}
