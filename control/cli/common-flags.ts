/**
 * What several svcpath commands share: the cluster flags (which state to
 * load, and how to allocate it) and the datapath flags (which node, how to
 * compile it), with their help lines and their turning into a loaded state,
 * a compiled program and a datapath from the files they name (the settings
 * themselves are checked and applied by control/runtime/setup.ts, which the
 * playground shares, with the parsers of their values); and the help's footer.
 * A flag's mistake is an InputError whose message starts with the flag.
 */
import { loadClusterState, readEvents } from '../cluster/index.js';
import type { DatapathSemantics } from '../compile/compiler.js';
import * as setup from '../runtime/setup.js';
import { DEFAULT_MAGLEV_TABLE_SIZE } from '../compile/maglev.js';
import { DEFAULT_CT_ENTRIES } from '../runtime/loader.js';

export { fail, parseInteger } from '../runtime/setup.js';

export const CLUSTER_OPTIONS = `  --cluster PATH                   Service, EndpointSlice, Endpoints, Pod, Node and KubeProxyConfiguration
                                   manifests (YAML or JSON, files or directories, kubectl List dumps)
  --service-cluster-ip-range CIDR[,CIDR]   where cluster IPs live (default: the state's ServiceCIDR
                                   objects; with neither, unknown)
  --service-node-port-range A-B    NodePort range (default 30000-32767)
  --seed N                         seed of cluster IP and NodePort allocation, the Maglev
                                   hashes and masquerade ports (default 0)
  --max-endpoints-per-slice N      endpoints per EndpointSlice derived from Pods (default 100)
  --strict                         what the API server would refuse is an error, not a warning`;

export const DATAPATH_OPTIONS = `  --node NAME                      the Node whose datapath is emulated (optional with one Node)
  --cluster-cidr CIDR[,CIDR]       the pod network (overrides KubeProxyConfiguration clusterCIDR)
  --nodeport-addresses LIST        where NodePorts are served: CIDRs, or "primary", the node's first
                                   InternalIP of each family (default); 0.0.0.0/0,::/0 for all of its
                                   addresses (overrides KubeProxyConfiguration nodePortAddresses)
  --masquerade-all                 masquerade all cluster-IP traffic, from pods too
  --masquerade-address IP[,IP]     masquerade source per family (default the node's first InternalIP of each)
  --snat-port-range A-B            masquerade source ports (default 1024-65535)
  --maglev-table-size M            Maglev lookup table size, a prime (default ${DEFAULT_MAGLEV_TABLE_SIZE})
  --ct-entries N                   conntrack map size, two entries per flow (default ${DEFAULT_CT_ENTRIES})`;

/** The last lines of every command's help: -h (which parseCommandArgs adds to every command) and the exit status. */
export const HELP_FOOTER = `  -h, --help                       this help

Exit status: 0 on success, 1 on bad input (the message names file, record or object, and field).`;

/** What `svcpath <command> --help` does: the command's help on stdout, and success. */
export function printHelp(help: string): number {
  console.log(help);
  return 0;
}

/** For a command that takes flags only; `command` names the flags' source, as in parseCommandArgs. */
export function noArguments(command: string, positionals: string[]): void {
  if (positionals.length > 0) setup.fail(`${command}: unexpected argument "${positionals[0]}"`);
}

/** The capture a replay, trace or diff reads: exactly one argument. */
export function oneTrace(command: string, positionals: string[]): string {
  if (positionals.length !== 1) setup.fail(`${command}: expected one trace file, got ${positionals.length}`);
  return positionals[0];
}

/** Flags that name and allocate the cluster state, shared by every command that reads one. */
export const CLUSTER_FLAGS = {
  cluster: { type: 'string', multiple: true },
  'service-cluster-ip-range': { type: 'string' },
  'service-node-port-range': { type: 'string' },
  seed: { type: 'string' },
  'max-endpoints-per-slice': { type: 'string' },
  strict: { type: 'boolean' },
} as const;

interface ClusterFlags extends setup.ClusterFlagValues {
  cluster?: string[];
}

/** Prints the warnings of what was read, as the commands do before going on. */
function warned<T extends { warnings?: string[] }>(read: T): T {
  for (const warning of read.warnings ?? []) console.error(`svcpath: warning: ${warning}`);
  return read;
}

/** The files the flags name: --cluster's manifests and --events' watch events (`-`: standard input). */
function fileInputs(values: { cluster?: string[]; events?: string }): setup.Inputs {
  const paths = values.cluster ?? [];
  const events = values.events;
  return {
    manifests: { count: paths.length, load: (opts) => warned(loadClusterState(paths, opts)) },
    events:
      events === undefined
        ? undefined
        : { name: events === '-' ? 'stdin' : events, read: (initial, opts) => warned(readEvents(events, initial, opts)) },
  };
}

/** The cluster state the flags name, validated, with cluster IPs and NodePorts allocated; its warnings on stderr. */
export function loadState(values: ClusterFlags): ReturnType<typeof setup.loadState> {
  return setup.loadState(values, fileInputs(values));
}

/** Flags that shape the compiled datapath: replay, trace, diff, maps, and a test case's args file. */
export const DATAPATH_FLAGS = {
  ...CLUSTER_FLAGS,
  node: { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'nodeport-addresses': { type: 'string' },
  'masquerade-all': { type: 'boolean' },
  'masquerade-address': { type: 'string' },
  'snat-port-range': { type: 'string' },
  'maglev-table-size': { type: 'string' },
  'ct-entries': { type: 'string' },
} as const;

interface DatapathFlags extends ClusterFlags, setup.DatapathFlagValues {}

/** The cluster state from the flags, compiled (with `semantics`, for --events), the options it was compiled with, and the conntrack size asked for. */
export function compileFromFlags(values: DatapathFlags, semantics?: DatapathSemantics) {
  return setup.compileFromFlags(values, fileInputs(values), semantics);
}

/** The cluster state the flags name, compiled and loaded into a datapath. */
export function buildDatapath(values: DatapathFlags) {
  return setup.buildDatapath(values, fileInputs(values));
}

export const EVENTS_OPTIONS = `  --events FILE|-                  cluster changes during the capture: watch events as kubectl prints them
                                   in JSON, each with its time (README: Cluster changes); - is standard input
  --datapath-semantics kube-proxy|cilium   what a flow does when its backend leaves: keep its DNAT, UDP
                                   entries flushed (kube-proxy, default), or choose again (cilium)
  --min-sync-period DURATION       changes reach the datapath at most once per DURATION, as kube-proxy's
                                   syncs (default: the KubeProxyConfiguration's, else 1s; 0: each at its time)`;

/** Flags of the commands that replay a capture through cluster changes: replay, trace, diff, a test case's args. */
export const EVENTS_FLAGS = {
  events: { type: 'string' },
  'datapath-semantics': { type: 'string' },
  'min-sync-period': { type: 'string' },
} as const;

interface EventsFlags extends setup.EventsFlagValues {
  events?: string;
}

/**
 * The datapath of a replay: the cluster state the flags name, compiled and
 * loaded, and with --events the changes to apply during the replay (maps
 * sized for them), their warnings printed on stderr, and the events file's
 * mistake, if any: the events before it are applied, and the caller reports
 * it once the replay is done, as a broken capture's.
 */
export function buildReplayDatapath(values: DatapathFlags & EventsFlags, capture?: string) {
  if (values.events === '-' && capture === '-') setup.fail('--events: standard input is the capture already; name a file');
  return setup.buildReplayDatapath(values, fileInputs(values));
}

/** A namespace name: an RFC 1123 label, as the API server requires. */
export function parseName(flag: string, text: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(text)) {
    setup.fail(
      `${flag}: "${text}" is not a namespace name (an RFC 1123 label: at most 63 lowercase letters, digits and '-', ` +
        'starting and ending with a letter or digit)',
    );
  }
  return text;
}
