/**
 * Topology-aware routing: which of a Service port's endpoints this node's
 * proxy uses, as kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go)
 * decides it.
 *
 * kube-proxy reads only the hints: it does not look at the Service's
 * `trafficDistribution` or topology annotation, because the EndpointSlice
 * controller sets hints only when one of them asks for topology and removes
 * them otherwise. So hints on given EndpointSlices are followed whatever the
 * Service says; the Service's request is reported beside the decision, so a
 * reader can see hints that the controller would not have set, or a request
 * without hints.
 *
 * The rules, in kube-proxy's order:
 * - Only the cluster-wide set is filtered by topology. The set a Local traffic
 *   policy uses is this node's endpoints, never filtered by topology.
 * - Hints are weighed over the ready endpoints only. With same-node hints
 *   (`hints.forNodes`, PreferSameNode, Kubernetes 1.33 and later) on every
 *   ready endpoint and one of them for this node, the set is the endpoints
 *   hinted for this node. Otherwise, with a zone hint on every ready endpoint
 *   and one for this node's zone (its `topology.kubernetes.io/zone` label),
 *   the set is the endpoints hinted for that zone. Otherwise hints are ignored.
 * - The terminating fallback (KEP-1669) comes after: when no ready endpoint is
 *   left, the serving terminating ones are used, every one of them, since
 *   topology was already ignored if none was ready. The local set falls back
 *   in the same way, on its own.
 */
import type { EndpointConditions, EndpointHints, Service, TrafficPolicy } from '../cluster/state.js';

/** What the categorisation reads of an endpoint. */
export interface TopologyEndpoint {
  conditions: EndpointConditions;
  nodeName?: string;
  hints?: EndpointHints;
}

/** Which endpoints new flows may use (KEP-1669: terminating ones only as a last resort). */
export type EndpointSelection = 'ready' | 'serving-terminating' | 'none';

/** The hints filter that chose the cluster-wide set: this node's, this zone's, or none. */
export type TopologyFilter = 'node' | 'zone' | 'none';

export interface TopologyChoice {
  filter: TopologyFilter;
  /** The node's name or zone the filter kept, when one applied. */
  for?: string;
  /** Why no filter applied, when none did. */
  whyNot?: string;
  /** What the Service asks for (`trafficDistribution`, else an `Auto` topology annotation), when it asks. */
  requested?: string;
}

/** What the categorisation reads of the Service port and of the node. */
export interface TopologyService {
  internalTrafficPolicy: TrafficPolicy;
  externalTrafficPolicy: TrafficPolicy;
  trafficDistribution?: string;
  topologyAnnotation?: string;
  /** Reached other than by its cluster IPs (a NodePort, an external or load-balancer IP). */
  externallyAccessible: boolean;
}

export interface TopologyNode {
  name?: string;
  zone?: string;
}

export interface UsableSet<E> {
  endpoints: E[];
  selection: EndpointSelection;
}

export interface Categorized<E> {
  /**
   * The cluster-wide set, topology applied. kube-proxy builds it only when the port uses
   * it (internalTrafficPolicy Cluster, or reached from outside); svcpath always does, for
   * the counts, and then without topology: the datapath never reads it for such a port.
   */
  cluster: UsableSet<E>;
  usesCluster: boolean;
  /** This node's usable endpoints; only when a Local traffic policy uses them. */
  local?: UsableSet<E>;
  /** Every endpoint this node may send a new flow to: both sets together. */
  allReachable: E[];
  /** A usable endpoint exists somewhere in the cluster (even if none is reachable from here). */
  hasAnyEndpoints: boolean;
  topology: TopologyChoice;
}

const ZONE_LABEL = 'topology.kubernetes.io/zone';

/** The topology the Service asks the EndpointSlice controller for, if any. */
export function requestedTopology(svc: Pick<Service, 'trafficDistribution' | 'topologyAnnotation'>): string | undefined {
  if (svc.trafficDistribution) return svc.trafficDistribution;
  // The controller accepts "Auto" and, from the annotation's first days, "auto".
  if (svc.topologyAnnotation === 'Auto' || svc.topologyAnnotation === 'auto') return `topology annotation ${svc.topologyAnnotation}`;
  return undefined;
}

/**
 * The choice in a few words, as the services table, the summary and traces print it:
 * "PreferClose: zone us-east-1a", "PreferClose: no hints used (no endpoint has a zone hint)",
 * "hints: zone us-east-1a" for hints nothing in the Service asks for; undefined when the
 * Service asks for no topology and no hints are used, which is most Services.
 */
export function describeTopology(choice: TopologyChoice): string | undefined {
  if (choice.filter === 'none') return choice.requested ? `${choice.requested}: no hints used (${choice.whyNot})` : undefined;
  return `${choice.requested ?? 'hints'}: ${choice.filter} ${choice.for}`;
}

/** kube-proxy's topologyModeFromHints: the filter the ready endpoints' hints allow on this node, or why none. */
function topologyFromHints(endpoints: readonly TopologyEndpoint[], node: TopologyNode): Omit<TopologyChoice, 'requested'> {
  const ready = endpoints.filter((e) => e.conditions.ready);
  if (ready.length === 0) return { filter: 'none', whyNot: 'no ready endpoint' };
  const nodeHinted = ready.filter((e) => (e.hints?.forNodes.length ?? 0) > 0);
  if (nodeHinted.length === ready.length && node.name !== undefined && ready.some((e) => e.hints!.forNodes.includes(node.name!))) {
    return { filter: 'node', for: node.name };
  }
  const zoneHinted = ready.filter((e) => (e.hints?.forZones.length ?? 0) > 0);
  if (zoneHinted.length === 0) return { filter: 'none', whyNot: 'no endpoint has a zone hint' };
  if (zoneHinted.length < ready.length) {
    return { filter: 'none', whyNot: `${ready.length - zoneHinted.length} of ${ready.length} ready endpoints have no zone hint` };
  }
  if (!node.zone) return { filter: 'none', whyNot: `the node has no ${ZONE_LABEL} label` };
  if (!ready.some((e) => e.hints!.forZones.includes(node.zone!))) {
    return { filter: 'none', whyNot: `no endpoint is hinted for zone ${node.zone}` };
  }
  return { filter: 'zone', for: node.zone };
}

/** kube-proxy's availableForTopology: whether the chosen filter keeps an endpoint. */
function keptBy(choice: TopologyChoice, e: TopologyEndpoint): boolean {
  if (choice.filter === 'node') return e.hints?.forNodes.includes(choice.for!) ?? false;
  if (choice.filter === 'zone') return e.hints?.forZones.includes(choice.for!) ?? false;
  return true;
}

/** The ready endpoints that pass, else the serving terminating ones (of the whole list, as kube-proxy does). */
function usable<E extends TopologyEndpoint>(endpoints: readonly E[], passes: (e: E) => boolean): UsableSet<E> {
  const ready = endpoints.filter((e) => e.conditions.ready && passes(e));
  if (ready.length > 0) return { endpoints: ready, selection: 'ready' };
  const draining = endpoints.filter((e) => e.conditions.serving && e.conditions.terminating);
  if (draining.length > 0) return { endpoints: draining, selection: 'serving-terminating' };
  return { endpoints: [], selection: 'none' };
}

/**
 * One Service port's endpoints of one address family, sorted into the set the
 * cluster-wide policy uses (topology applied) and the set a Local policy uses,
 * as kube-proxy's CategorizeEndpoints does on the node `node`.
 */
export function categorizeEndpoints<E extends TopologyEndpoint>(
  svc: TopologyService,
  endpoints: readonly E[],
  node: TopologyNode,
): Categorized<E> {
  const usesCluster = svc.internalTrafficPolicy === 'Cluster' || svc.externallyAccessible;
  const usesLocal = svc.internalTrafficPolicy === 'Local' || (svc.externalTrafficPolicy === 'Local' && svc.externallyAccessible);
  const requested = requestedTopology(svc);
  const fromHints: TopologyChoice = usesCluster
    ? topologyFromHints(endpoints, node)
    : { filter: 'none', whyNot: 'internalTrafficPolicy Local: only the endpoints on this node are used' };
  const topology = { ...fromHints, ...(requested ? { requested } : {}) };
  const cluster = usable(endpoints, (e) => keptBy(topology, e));
  const isLocal = (e: E) => node.name !== undefined && e.nodeName === node.name;
  const local = usesLocal ? usable(endpoints.filter(isLocal), () => true) : undefined;
  const anyUsable = endpoints.some((e) => e.conditions.ready || (e.conditions.serving && e.conditions.terminating));
  const reachable = [...(usesCluster ? cluster.endpoints : []), ...(local?.endpoints ?? [])];
  return {
    cluster,
    usesCluster,
    ...(local ? { local } : {}),
    allReachable: [...new Set(reachable)],
    hasAnyEndpoints: anyUsable,
    topology,
  };
}
