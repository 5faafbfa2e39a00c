/**
 * What several svcpath commands share: the cluster flags (which state to
 * load, and how to allocate it) and the datapath flags (which node, how to
 * compile it), with their help lines and their turning into a loaded state,
 * a compiled program and a datapath; the parsers of flag values (numbers,
 * CIDRs, port ranges, addresses, namespace names); and the help's footer.
 * A flag's mistake is an InputError whose message starts with the flag.
 */
import ipaddr from 'ipaddr.js';
import { loadClusterState, resolveServices } from '../cluster/index.js';
import type { ClusterState } from '../cluster/state.js';
import { MAX_MAX_ENDPOINTS_PER_SLICE } from '../cluster/endpointslice-controller.js';
import { compile, type CompileOptions, type DatapathSemantics } from '../compile/compiler.js';
import { readEvents } from '../cluster/events.js';
import { parseGoDuration } from '../cluster/validate.js';
import { ClusterChanges } from '../runtime/cluster-sync.js';
import { roomFor } from '../runtime/rebase.js';
import { DEFAULT_MIN_SYNC_PERIOD_NS } from '../runtime/sync-schedule.js';
import { trackProgram } from '../runtime/update.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, isPrime } from '../compile/maglev.js';
import { InputError } from '../common/errors.js';
import { DEFAULT_CT_ENTRIES, loadProgram } from '../runtime/loader.js';

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

export function fail(message: string): never {
  throw new InputError(message);
}

/** For a command that takes flags only; `command` names the flags' source, as in parseCommandArgs. */
export function noArguments(command: string, positionals: string[]): void {
  if (positionals.length > 0) fail(`${command}: unexpected argument "${positionals[0]}"`);
}

/** The capture a replay, trace or diff reads: exactly one argument. */
export function oneTrace(command: string, positionals: string[]): string {
  if (positionals.length !== 1) fail(`${command}: expected one trace file, got ${positionals.length}`);
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

interface ClusterFlags {
  cluster?: string[];
  'service-cluster-ip-range'?: string;
  'service-node-port-range'?: string;
  seed?: string;
  'max-endpoints-per-slice'?: string;
  strict?: boolean;
}

/** The cluster state the flags name, validated, with cluster IPs and NodePorts allocated; its warnings on stderr. */
export function loadState(values: ClusterFlags): {
  state: ClusterState;
  seed: number;
  serviceNodePortRange?: [number, number];
  maxEndpointsPerSlice?: number;
} {
  if (!values.cluster?.length) fail('--cluster is required');
  const seed = values.seed === undefined ? 0 : parseInteger('--seed', values.seed, 0, 0xffffffff);
  const serviceRanges =
    values['service-cluster-ip-range'] === undefined
      ? undefined
      : parseCidrList('--service-cluster-ip-range', values['service-cluster-ip-range']);
  const nodePortRange =
    values['service-node-port-range'] === undefined
      ? undefined
      : parsePortRange('--service-node-port-range', values['service-node-port-range']);
  const maxEndpointsPerSlice =
    values['max-endpoints-per-slice'] === undefined
      ? undefined
      : parseInteger('--max-endpoints-per-slice', values['max-endpoints-per-slice'], 1, MAX_MAX_ENDPOINTS_PER_SLICE);
  const state = loadClusterState(values.cluster, {
    serviceClusterIPRanges: serviceRanges,
    serviceNodePortRange: nodePortRange,
    seed,
    maxEndpointsPerSlice,
    strict: values.strict,
  });
  for (const warning of state.warnings ?? []) console.error(`svcpath: warning: ${warning}`);
  return { state, seed, serviceNodePortRange: nodePortRange, maxEndpointsPerSlice };
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

interface DatapathFlags extends ClusterFlags {
  node?: string;
  'cluster-cidr'?: string;
  'nodeport-addresses'?: string;
  'masquerade-all'?: boolean;
  'masquerade-address'?: string;
  'snat-port-range'?: string;
  'maglev-table-size'?: string;
  'ct-entries'?: string;
}

/** The cluster state from the flags, compiled (with `semantics`, for --events), the options it was compiled with, and the conntrack size asked for. */
export function compileFromFlags(values: DatapathFlags, semantics?: DatapathSemantics) {
  const maglevTableSize =
    values['maglev-table-size'] === undefined
      ? DEFAULT_MAGLEV_TABLE_SIZE
      : parseInteger('--maglev-table-size', values['maglev-table-size'], 2, 1 << 20);
  if (!isPrime(maglevTableSize)) fail(`--maglev-table-size: ${maglevTableSize} is not prime`);
  const ctEntries =
    values['ct-entries'] === undefined ? DEFAULT_CT_ENTRIES : parseInteger('--ct-entries', values['ct-entries'], 2, 1 << 26);
  const clusterCIDRs = values['cluster-cidr'] === undefined ? undefined : parseCidrList('--cluster-cidr', values['cluster-cidr']);
  const nodePortAddresses =
    values['nodeport-addresses'] === undefined ? undefined : parseNodePortAddresses('--nodeport-addresses', values['nodeport-addresses']);
  const snatPortRange =
    values['snat-port-range'] === undefined ? undefined : parsePortRange('--snat-port-range', values['snat-port-range']);
  const masqueradeAddresses =
    values['masquerade-address'] === undefined ? [] : parseAddressList('--masquerade-address', values['masquerade-address']);
  const masqueradeAddress = masqueradeAddresses.find((a) => !a.includes(':'));
  const masqueradeAddress6 = masqueradeAddresses.find((a) => a.includes(':'));

  const { state, seed, serviceNodePortRange, maxEndpointsPerSlice } = loadState(values);
  const resolved = resolveServices(state);
  const opts: CompileOptions = {
    node: values.node,
    seed,
    maglevTableSize,
    clusterCIDRs,
    nodePortAddresses,
    snatPortRange,
    masqueradeAddress,
    masqueradeAddress6,
    masqueradeAll: values['masquerade-all'],
    ...(semantics && { semantics }),
  };
  const compiled = compile(state, resolved.services, opts);
  return { state, resolved, compiled, ctEntries, opts, loaded: { serviceNodePortRange, maxEndpointsPerSlice } };
}

/** The cluster state the flags name, compiled and loaded into a datapath. */
export async function buildDatapath(values: DatapathFlags) {
  const built = compileFromFlags(values);
  return { ...built, dp: await loadProgram(built.compiled, { ctEntries: built.ctEntries }) };
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

interface EventsFlags {
  events?: string;
  'datapath-semantics'?: string;
  'min-sync-period'?: string;
}

const SEMANTICS: readonly DatapathSemantics[] = ['kube-proxy', 'cilium'];

/**
 * The datapath of a replay: the cluster state the flags name, compiled and
 * loaded, and with --events the changes to apply during the replay (maps
 * sized for them), their notes and warnings (printed on stderr), and the
 * events file's mistake, if any: the events before it are applied, and the
 * caller reports it once the replay is done, as a broken capture's.
 */
export async function buildReplayDatapath(values: DatapathFlags & EventsFlags, capture?: string) {
  const semantics = values['datapath-semantics'];
  if (semantics !== undefined && !SEMANTICS.includes(semantics as DatapathSemantics)) {
    fail(`--datapath-semantics: must be ${SEMANTICS.join(' or ')}, got "${semantics}"`);
  }
  if (values.events === undefined) {
    for (const flag of ['datapath-semantics', 'min-sync-period'] as const) {
      if (values[flag] !== undefined) fail(`--${flag}: only with --events (it says how cluster changes apply)`);
    }
    return { ...(await buildDatapath(values)), changes: undefined, eventsError: undefined };
  }
  if (values.events === '-' && capture === '-') fail('--events: standard input is the capture already; name a file');
  const built = compileFromFlags(values, semantics as DatapathSemantics | undefined);
  const read = readEvents(values.events, built.state, {
    strict: values.strict,
    serviceNodePortRange: built.loaded.serviceNodePortRange,
  });
  for (const warning of read.warnings) console.error(`svcpath: warning: ${warning}`);
  const dp = await loadProgram(built.compiled, { ctEntries: built.ctEntries, room: roomFor(built.state, read.events) });
  const live = trackProgram(dp, { state: built.state, resolved: built.resolved.services, compiled: built.compiled, opts: built.opts });
  const minSyncPeriodNs = minSyncPeriod(values['min-sync-period'], built.state);
  const changes = new ClusterChanges(live, built.state, read.events, {
    file: values.events === '-' ? 'stdin' : values.events,
    semantics: (semantics as DatapathSemantics | undefined) ?? 'kube-proxy',
    minSyncPeriodNs,
    maxEndpointsPerSlice: built.loaded.maxEndpointsPerSlice,
    read,
  });
  return { ...built, dp, changes, eventsError: read.error };
}

/** --min-sync-period, else the KubeProxyConfiguration's, else kube-proxy's default (1 s), in nanoseconds. */
function minSyncPeriod(flag: string | undefined, state: ClusterState): bigint {
  if (flag === undefined) {
    const seconds = state.proxyConfig?.minSyncPeriod;
    return seconds === undefined ? DEFAULT_MIN_SYNC_PERIOD_NS : BigInt(Math.round(seconds * 1e9));
  }
  const nanoseconds = parseGoDuration(flag);
  if (nanoseconds === undefined || nanoseconds < 0) fail(`--min-sync-period: must be a duration like "1s", "500ms" or "0", got "${flag}"`);
  return BigInt(nanoseconds);
}

export function parseInteger(flag: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) fail(`${flag}: "${text}" is not a whole number`);
  const n = Number(text);
  if (n < min || n > max) fail(`${flag}: ${n} is outside ${min}..${max}`);
  return n;
}

/** A comma-separated list of CIDRs with at most one per address family. */
function parseCidrList(flag: string, text: string): string[] {
  const cidrs = text
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean);
  if (cidrs.length === 0) fail(`${flag}: empty`);
  const families = new Set<string>();
  for (const c of cidrs) {
    let kind: string;
    try {
      kind = ipaddr.parseCIDR(c)[0].kind();
    } catch {
      fail(`${flag}: "${c}" is not a CIDR`);
    }
    if (families.has(kind)) fail(`${flag}: more than one ${kind === 'ipv4' ? 'IPv4' : 'IPv6'} CIDR`);
    families.add(kind);
  }
  return cidrs;
}

function parsePortRange(flag: string, text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  if (!m) fail(`${flag}: "${text}" is not a range A-B`);
  const lo = parseInteger(flag, m[1], 1, 65535);
  const hi = parseInteger(flag, m[2], 1, 65535);
  if (lo >= hi) fail(`${flag}: ${lo}-${hi} is empty`);
  return [lo, hi];
}

/** One address per family, comma-separated. */
function parseAddressList(flag: string, text: string): string[] {
  const items = text
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  const families = new Set<string>();
  for (const item of items) {
    const v4 = ipaddr.IPv4.isValidFourPartDecimal(item);
    if (!v4 && !(ipaddr.IPv6.isValid(item) && !item.includes('%'))) fail(`${flag}: "${item}" is not an IP address`);
    const family = v4 ? 'IPv4' : 'IPv6';
    if (families.has(family)) fail(`${flag}: more than one ${family} address`);
    families.add(family);
  }
  if (items.length === 0) fail(`${flag}: empty`);
  return items;
}

function parseNodePortAddresses(flag: string, text: string): string[] {
  const items = text
    .split(',')
    .map((c) => c.trim())
    .filter(Boolean);
  for (const item of items) {
    if (item === 'primary') {
      // As kube-proxy's validation: "primary" stands alone.
      if (items.length > 1) fail(`${flag}: "primary" cannot be combined with CIDRs`);
      continue;
    }
    try {
      ipaddr.parseCIDR(item);
    } catch {
      fail(`${flag}: "${item}" is neither a CIDR nor "primary"`);
    }
  }
  return items;
}

/** A namespace name: an RFC 1123 label, as the API server requires. */
export function parseName(flag: string, text: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(text)) {
    fail(
      `${flag}: "${text}" is not a namespace name (an RFC 1123 label: at most 63 lowercase letters, digits and '-', ` +
        'starting and ending with a letter or digit)',
    );
  }
  return text;
}
