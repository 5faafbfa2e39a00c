/** `svcpath endpoints`: the EndpointSlices derived from the Pods, like kubectl get endpointslices -A. */
import { parseCommandArgs } from '../args.js';
import { formatEndpoints, type OutputFormat } from '../endpoints-output.js';
import { CLUSTER_FLAGS, CLUSTER_OPTIONS, fail, HELP_FOOTER, loadState, noArguments, printHelp } from '../common-flags.js';

export const HELP = `svcpath endpoints: the EndpointSlices the EndpointSlice controller derives from the Pods, like
kubectl get endpointslices -A

Usage:
  svcpath endpoints --cluster <file-or-dir> [--cluster ...] [-o yaml|json] [--legacy]

Flags:
${CLUSTER_OPTIONS}
  -o, --output yaml|json           the slices as a List
  --legacy                         also the v1 Endpoints the Endpoints controller makes of the Pods
${HELP_FOOTER}`;

const FLAGS = { ...CLUSTER_FLAGS, output: { type: 'string', short: 'o' }, legacy: { type: 'boolean' } } as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('endpoints', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('endpoints', positionals);
  const output = values.output ?? 'table';
  if (!['table', 'yaml', 'json'].includes(output)) fail(`--output: "${output}" is not yaml or json`);
  const { state } = loadState(values);
  console.log(formatEndpoints(state, output as OutputFormat, values.legacy ?? false));
  return 0;
}
