/** `svcpath dns`: the cluster DNS's records for Services as a zone file, or how one name resolves. */
import { clusterZone, formatQuery, formatZone, QUERY_TYPES, resolveQuery, type RecordType } from '../../discovery/dns.js';
import { parseCommandArgs } from '../args.js';
import { CLUSTER_FLAGS, CLUSTER_OPTIONS, fail, HELP_FOOTER, loadState, noArguments, parseName, printHelp } from '../common-flags.js';

export const HELP = `svcpath dns: the records the cluster DNS serves for Services, as a zone file, or how one name resolves

Usage:
  svcpath dns --cluster <file-or-dir> [--cluster ...] [--domain D] [--query NAME [--type T] [--from-namespace NS]] [--json]

Flags:
${CLUSTER_OPTIONS}
  --domain D                       the cluster domain (default cluster.local)
  --query NAME                     resolve NAME as a Pod does (search path, ndots:5)
  --type A|AAAA|SRV|CNAME|PTR|TXT  the record type asked for (default A)
  --from-namespace NS              the asking Pod's namespace (default default)
  --json                           the records or the resolution as JSON
${HELP_FOOTER}`;

const FLAGS = {
  ...CLUSTER_FLAGS,
  domain: { type: 'string' },
  query: { type: 'string' },
  type: { type: 'string' },
  'from-namespace': { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('dns', argv, FLAGS);
  if (values.help) return printHelp(HELP);
  noArguments('dns', positionals);
  if (values.query === undefined && (values.type !== undefined || values['from-namespace'] !== undefined)) {
    fail(`${values.type !== undefined ? '--type' : '--from-namespace'}: only with --query`);
  }
  const type = values.type === undefined ? undefined : (values.type.toUpperCase() as RecordType);
  if (type !== undefined && !QUERY_TYPES.includes(type)) fail(`--type: "${values.type}" is not one of ${QUERY_TYPES.join(', ')}`);
  const fromNamespace = values['from-namespace'] === undefined ? undefined : parseName('--from-namespace', values['from-namespace']);
  const { state } = loadState(values);
  const zone = clusterZone(state, { domain: values.domain });
  if (values.query === undefined) {
    console.log(values.json ? JSON.stringify(zone, null, 2) : formatZone(zone));
    return 0;
  }
  const result = resolveQuery(zone, values.query, { type, fromNamespace });
  console.log(values.json ? JSON.stringify(result, null, 2) : formatQuery(result));
  return 0;
}
