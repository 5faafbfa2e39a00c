/**
 * From settings to a loaded datapath: the cluster, datapath and events
 * settings as svcpath's flags spell them (text as typed: the CLI's parsed
 * flags, the playground's form), checked and turned into a cluster state, a
 * compiled program and a datapath, with the changes of a watch-events file.
 * Where the manifests and events come from is the caller's (`Inputs`): files
 * the CLI names (control/cli/common-flags.ts), or texts a page was given
 * (web/playground/). A setting's mistake is an InputError whose message
 * starts with its flag; nothing here prints.
 */
import ipaddr from 'ipaddr.js';
import { resolveServices, type EventsRead, type LoadOptions, type ReadEventsOptions } from '../cluster/index.js';
import type { ClusterState } from '../cluster/state.js';
import { MAX_MAX_ENDPOINTS_PER_SLICE } from '../cluster/endpointslice-controller.js';
import { parseGoDuration } from '../cluster/validate.js';
import { compile, type CompileOptions, type DatapathSemantics } from '../compile/compiler.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, isPrime } from '../compile/maglev.js';
import { InputError } from '../common/errors.js';
import { ClusterChanges } from './cluster-sync.js';
import { DEFAULT_CT_ENTRIES, loadProgram } from './loader.js';
import { roomFor } from './rebase.js';
import { DEFAULT_MIN_SYNC_PERIOD_NS } from './sync-schedule.js';
import { trackProgram } from './update.js';

export function fail(message: string): never {
  throw new InputError(message);
}

/**
 * Where the manifests and the watch events come from: the only thing the
 * CLI and the playground do differently.
 */
export interface Inputs {
  /** The manifests: how many were named (none is a mistake), and the cluster state they make with these options. */
  manifests: { count: number; load(opts: LoadOptions): ClusterState };
  /** The watch-events file, when one was named: its name in messages, and its events read against the initial state. */
  events?: { name: string; read(initial: ClusterState, opts: ReadEventsOptions): EventsRead };
  /** The datapath's compiled module; default build/datapath.wasm. */
  module?: WebAssembly.Module;
}

/** The settings that allocate the cluster state (the CLI's CLUSTER_FLAGS but --cluster), as typed. */
export interface ClusterFlagValues {
  'service-cluster-ip-range'?: string;
  'service-node-port-range'?: string;
  seed?: string;
  'max-endpoints-per-slice'?: string;
  strict?: boolean;
}

/** The cluster state the inputs give, validated, with cluster IPs and NodePorts allocated (its warnings in `state.warnings`). */
export function loadState(
  values: ClusterFlagValues,
  inputs: Pick<Inputs, 'manifests'>,
): {
  state: ClusterState;
  seed: number;
  serviceNodePortRange?: [number, number];
  maxEndpointsPerSlice?: number;
} {
  if (inputs.manifests.count === 0) fail('--cluster is required');
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
  const state = inputs.manifests.load({
    serviceClusterIPRanges: serviceRanges,
    serviceNodePortRange: nodePortRange,
    seed,
    maxEndpointsPerSlice,
    strict: values.strict,
  });
  return { state, seed, serviceNodePortRange: nodePortRange, maxEndpointsPerSlice };
}

/** The settings that shape the compiled datapath (the CLI's DATAPATH_FLAGS), as typed. */
export interface DatapathFlagValues extends ClusterFlagValues {
  node?: string;
  'cluster-cidr'?: string;
  'nodeport-addresses'?: string;
  'masquerade-all'?: boolean;
  'masquerade-address'?: string;
  'snat-port-range'?: string;
  'maglev-table-size'?: string;
  'ct-entries'?: string;
}

/** The cluster state of the inputs, compiled (with `semantics`, for events), the options it was compiled with, and the conntrack size asked for. */
export function compileFromFlags(values: DatapathFlagValues, inputs: Pick<Inputs, 'manifests'>, semantics?: DatapathSemantics) {
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

  const { state, seed, serviceNodePortRange, maxEndpointsPerSlice } = loadState(values, inputs);
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

/** The cluster state of the inputs, compiled and loaded into a datapath. */
export async function buildDatapath(values: DatapathFlagValues, inputs: Pick<Inputs, 'manifests' | 'module'>) {
  const built = compileFromFlags(values, inputs);
  return { ...built, dp: await loadProgram(built.compiled, { module: inputs.module, ctEntries: built.ctEntries }) };
}

/** The settings of cluster changes (the CLI's EVENTS_FLAGS but --events, which is an input), as typed. */
export interface EventsFlagValues {
  'datapath-semantics'?: string;
  'min-sync-period'?: string;
}

const SEMANTICS: readonly DatapathSemantics[] = ['kube-proxy', 'cilium'];

/**
 * The datapath of a replay: the cluster state of the inputs, compiled and
 * loaded, and with events the changes to apply during the replay (maps sized
 * for them), their notes and warnings (`changes.read`), and the events file's
 * mistake, if any: the events before it are applied, and the caller reports
 * it once the replay is done, as a broken capture's.
 */
export async function buildReplayDatapath(values: DatapathFlagValues & EventsFlagValues, inputs: Inputs) {
  const semantics = values['datapath-semantics'];
  if (semantics !== undefined && !SEMANTICS.includes(semantics as DatapathSemantics)) {
    fail(`--datapath-semantics: must be ${SEMANTICS.join(' or ')}, got "${semantics}"`);
  }
  const { events } = inputs;
  if (events === undefined) {
    for (const flag of ['datapath-semantics', 'min-sync-period'] as const) {
      if (values[flag] !== undefined) fail(`--${flag}: only with --events (it says how cluster changes apply)`);
    }
    return { ...(await buildDatapath(values, inputs)), changes: undefined, eventsError: undefined };
  }
  const built = compileFromFlags(values, inputs, semantics as DatapathSemantics | undefined);
  const read = events.read(built.state, { strict: values.strict, serviceNodePortRange: built.loaded.serviceNodePortRange });
  const dp = await loadProgram(built.compiled, {
    module: inputs.module,
    ctEntries: built.ctEntries,
    room: roomFor(built.state, read.events),
  });
  const live = trackProgram(dp, { state: built.state, resolved: built.resolved.services, compiled: built.compiled, opts: built.opts });
  const minSyncPeriodNs = minSyncPeriod(values['min-sync-period'], built.state);
  const changes = new ClusterChanges(live, built.state, read.events, {
    file: events.name,
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
