/**
 * The cluster state from manifests: read (load.ts), checked and defaulted
 * (validate.ts), completed with the cluster IPs and NodePorts the API server
 * would allocate (allocate.ts) and with the EndpointSlices the EndpointSlice
 * controller would make of the Pods (endpointslice-controller.ts), then joined
 * into per-port backends (resolve.ts).
 */
import type { ClusterState, EndpointSlice, Pod, Service } from './state.js';
import { allocate } from './allocate.js';
import { deriveEndpointSlices, isControllerManaged, onMissingNode, selectedPods } from './endpointslice-controller.js';
import { parseManifests, readManifests, type ManifestText, type ReadResult } from './load.js';
import { validateManifests } from './validate.js';
import { Warnings } from './warnings.js';

export { resolveServices, type Resolution } from './resolve.js';
export type { ManifestText } from './load.js';
export {
  applyEvent,
  formatTime,
  parseEvents,
  readEvents,
  type ClusterEvent,
  type EventKind,
  type EventsRead,
  type EventType,
  type ReadEventsOptions,
} from './events.js';

export interface LoadOptions {
  /**
   * The API server's --service-cluster-ip-range (one CIDR per IP family), joined with
   * the state's ServiceCIDR objects; with neither, the ranges are unknown.
   */
  serviceClusterIPRanges?: string[];
  /** The API server's --service-node-port-range, both ends included; default [30000, 32767]. */
  serviceNodePortRange?: [number, number];
  /** Seed of the pseudo-random choice of allocated cluster IPs and NodePorts; default 0. */
  seed?: number;
  /** kube-controller-manager's --max-endpoints-per-slice for slices derived from Pods; default 100. */
  maxEndpointsPerSlice?: number;
  /** --strict: the first warning is thrown as the error it would have been. */
  strict?: boolean;
}

/** kube-apiserver's default --service-node-port-range. */
const DEFAULT_SERVICE_NODE_PORT_RANGE: [number, number] = [30000, 32767];

/**
 * Reads manifest files and directories into a validated ClusterState; throws
 * InputError where the datapath cannot be built from them, and gathers the
 * rest of what the API server would refuse in `warnings`.
 */
export function loadClusterState(paths: string[], opts: LoadOptions = {}): ClusterState {
  return clusterStateOf(readManifests(paths), opts);
}

/** As loadClusterState, from manifest files already read (the playground's): their names stand for paths in messages. */
export function parseClusterState(files: readonly ManifestText[], opts: LoadOptions = {}): ClusterState {
  return clusterStateOf(parseManifests(files), opts);
}

function clusterStateOf({ manifests, notes }: ReadResult, opts: LoadOptions): ClusterState {
  const warnings = new Warnings(opts.strict);
  const serviceNodePortRange = opts.serviceNodePortRange ?? DEFAULT_SERVICE_NODE_PORT_RANGE;
  const { state: validated, takenIPs } = validateManifests(manifests, {
    serviceClusterIPRanges: opts.serviceClusterIPRanges,
    serviceNodePortRange,
    warnings,
  });
  const state = allocate(validated, { serviceNodePortRange, seed: opts.seed ?? 0, takenIPs, warnings });
  return { ...withPodEndpoints({ ...state, notes: [...notes, ...state.notes] }, opts), warnings: warnings.messages };
}

/**
 * The state with the EndpointSlices its Pods make: when it has Pods, every Service
 * the EndpointSlice controller manages (a selector, not ExternalName) and for which
 * no EndpointSlice is given gets the controller's slices, marked `derived`. Given
 * slices win; of the Pods they only take the node and the conditions they leave
 * unset, from the Pod with the endpoint's address in the slice's namespace.
 * A state without Pods is returned as it is.
 */
export function withPodEndpoints(state: ClusterState, opts: { maxEndpointsPerSlice?: number } = {}): ClusterState {
  const pods = state.pods ?? [];
  if (pods.length === 0) return state;
  const given = new Set(state.endpointSlices.map((s) => `${s.namespace}/${s.serviceName}`));
  // The controller leaves out Pods on Nodes it does not know; checked only when the state has Nodes.
  const nodeNames = state.nodes.length > 0 ? new Set(state.nodes.map((n) => n.name)) : undefined;
  const topologyEvents: string[] = [];
  const derived = deriveEndpointSlices(state.services, pods, {
    maxEndpointsPerSlice: opts.maxEndpointsPerSlice,
    nodeNames,
    nodes: state.nodes,
    recordEvent: (message) => topologyEvents.push(message),
    hasSlices: (s) => given.has(`${s.namespace}/${s.name}`),
  });
  const notes: string[] = [];
  for (const service of state.services) {
    const key = `${service.namespace}/${service.name}`;
    if (!isControllerManaged(service) || given.has(key)) continue;
    const slices = derived.filter((s) => s.namespace === service.namespace && s.serviceName === service.name);
    const endpoints = slices.reduce((n, s) => n + s.endpoints.length, 0);
    notes.push(
      `${service.origin.file}: ${service.origin.object}: ${slices.length} EndpointSlice${slices.length === 1 ? '' : 's'} ` +
        `derived from its Pods (${endpoints} endpoint${endpoints === 1 ? '' : 's'})`,
    );
    notes.push(
      ...podsOnMissingNodes(
        service,
        selectedPods(service, pods).filter((pod) => pod.podIPs.length > 0 && onMissingNode(pod, service, nodeNames)),
      ),
    );
    const legacy = (state.legacyEndpoints ?? []).find((e) => e.namespace === service.namespace && e.name === service.name);
    if (legacy) {
      notes.push(
        `${legacy.origin.file}: ${legacy.origin.object}: ignored: its Service has a selector, so its ` +
          'EndpointSlices come from the Pods (the mirroring controller skips Services with a selector)',
      );
    }
  }
  const derivedKeys = new Set(derived.map((s) => `${s.namespace}/${s.serviceName}`));
  return {
    ...state,
    endpointSlices: [...state.endpointSlices.map((s) => completeFromPods(s, pods)), ...derived],
    legacyEndpoints: (state.legacyEndpoints ?? []).filter((e) => !derivedKeys.has(`${e.namespace}/${e.name}`)),
    notes: [...state.notes, ...notes, ...topologyEvents],
  };
}

/** How many Pod names a missing-node note lists before it only counts the rest. */
const PODS_NAMED = 3;

/**
 * One note per missing node name of a Service's Pods, as the controller logs a
 * skipped Pod: how many, the node, and the first few Pods in name order.
 */
function podsOnMissingNodes(service: Service, skipped: Pod[]): string[] {
  const byNode = new Map<string, Pod[]>();
  for (const pod of skipped) byNode.set(pod.nodeName ?? '', [...(byNode.get(pod.nodeName ?? '') ?? []), pod]);
  return [...byNode].map(([node, group]) => {
    const names = group.map((p) => `${p.namespace}/${p.name}`).sort();
    const more = names.length > PODS_NAMED ? ` and ${names.length - PODS_NAMED} more` : '';
    const count = group.length === 1 ? '1 Pod' : `${group.length} Pods`;
    const their = group.length === 1 ? 'its' : 'their';
    const where = node
      ? `${their} node ${JSON.stringify(node)} is not among the Nodes`
      : `${group.length === 1 ? 'it has' : 'they have'} no spec.nodeName`;
    return (
      `${service.origin.file}: ${service.origin.object}: ${count} not made endpoints: ${where} ` +
      '(the EndpointSlice controller skips such Pods unless publishNotReadyAddresses): ' +
      `${names.slice(0, PODS_NAMED).join(', ')}${more}`
    );
  });
}

/** A given slice with the node and unset conditions of its endpoints taken from their Pods. */
function completeFromPods(slice: EndpointSlice, pods: Pod[]): EndpointSlice {
  if (slice.addressType === 'FQDN') return slice;
  const byIP = new Map<string, Pod>();
  for (const pod of pods) if (pod.namespace === slice.namespace) for (const ip of pod.podIPs) byIP.set(ip, pod);
  let changed = false;
  const endpoints = slice.endpoints.map((endpoint) => {
    const pod = endpoint.addresses.map((a) => byIP.get(a)).find((p) => p !== undefined);
    if (!pod || (endpoint.nodeName !== undefined && !endpoint.unsetConditions)) return endpoint;
    const unset = new Set(endpoint.unsetConditions ?? []);
    const serving = unset.has('serving') ? pod.ready : endpoint.conditions.serving;
    const terminating = unset.has('terminating') ? pod.terminating : endpoint.conditions.terminating;
    const ready = unset.has('ready') ? pod.ready && !pod.terminating : endpoint.conditions.ready;
    changed = true;
    return {
      ...endpoint,
      nodeName: endpoint.nodeName ?? pod.nodeName,
      conditions: { ready, serving, terminating },
      unsetConditions: undefined,
    };
  });
  return changed ? { ...slice, endpoints } : slice;
}
