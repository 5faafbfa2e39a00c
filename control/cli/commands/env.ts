/** `svcpath env`: the Service environment variables the kubelet gives a Pod created now. */
import { formatEnv, podEnv } from '../../discovery/env.js';
import { parseCommandArgs } from '../args.js';
import { CLUSTER_FLAGS, CLUSTER_OPTIONS, fail, HELP_FOOTER, loadState, noArguments, parseName, printHelp } from '../common-flags.js';

export const HELP = `svcpath env: the Service environment variables the kubelet gives a Pod created now in a namespace

Usage:
  svcpath env --cluster <file-or-dir> [--cluster ...] --namespace NS [--enable-service-links=false] [--json]

Flags:
${CLUSTER_OPTIONS}
  --namespace NS                   the Pod's namespace (required)
  --enable-service-links=false     as the Pod field: only the kubernetes Service's variables
  --json                           the variables per Service as JSON
${HELP_FOOTER}`;

const FLAGS = {
  ...CLUSTER_FLAGS,
  namespace: { type: 'string' },
  'enable-service-links': { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('env', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('env', positionals);
  if (values.namespace === undefined) fail('--namespace is required (the namespace of the Pod)');
  const namespace = parseName('--namespace', values.namespace);
  const links = values['enable-service-links'];
  if (links !== undefined && links !== 'true' && links !== 'false') fail(`--enable-service-links: "${links}" is neither true nor false`);
  const { state } = loadState(values);
  const env = podEnv(state, namespace, { enableServiceLinks: links !== 'false' });
  for (const note of env.notes) console.error(`svcpath: note: ${note}`);
  console.log(values.json ? JSON.stringify(env, null, 2) : formatEnv(env));
  return 0;
}
