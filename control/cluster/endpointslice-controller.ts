/**
 * The EndpointSlice controller of kube-controller-manager, as a pure function:
 * Services and Pods → the EndpointSlices it would create for a cluster with no
 * slices yet. Also the Endpoints controller's legacy v1 Endpoints of the same
 * Pods. Follows pkg/controller/endpointslice and staging k8s.io/endpointslice
 * (reconciler, utils):
 *
 * - only Services with a selector, not ExternalName; Pods in the Service's
 *   namespace whose labels equal every selector label;
 * - Pods without an IP and Pods in phase Succeeded or Failed are no endpoints;
 *   terminating Pods are (with terminating: true);
 * - conditions: serving = the Pod's Ready condition, terminating =
 *   deletionTimestamp set, ready = publishNotReadyAddresses || (serving && !terminating);
 * - each Service port resolves per Pod: a numeric targetPort as is, a named one
 *   through the Pod's container port of that name and protocol; a Pod without
 *   it has no endpoint port for that Service port;
 * - endpoints are grouped by their set of endpoint ports (so Pods serving a
 *   named port on different numbers land in different slices), then by address
 *   family (one slice per family of the Service), at most maxEndpointsPerSlice
 *   endpoints per slice;
 * - a Pod on a Node the state does not have is left out (the controller's
 *   Node lister finds none), unless publishNotReadyAddresses; this check is
 *   made only when the state has Nodes at all (`nodeNames`);
 * - labels kubernetes.io/service-name, endpointslice.kubernetes.io/managed-by
 *   and, for a headless Service, service.kubernetes.io/headless (the
 *   Service's own labels, which the controller copies too, are not read);
 * - each family of the Service without any endpoint gets an empty
 *   placeholder slice;
 * - an endpoint's zone is its Pod's Node's topology.kubernetes.io/zone label;
 * - topology hints, per family, when the Service asks for them (`topologyHints`).
 *
 * Deterministic stand-ins where the controller is not: endpoints in a slice are
 * in Pod name order; slices are named `<service>-<5 characters>` as the API
 * server's generateName does, but the 5 characters are a hash of the slice's
 * namespace, Service, family, port set and index rather than random.
 */
import ipaddr from 'ipaddr.js';
import type {
  ContainerPort,
  Endpoint,
  EndpointPort,
  EndpointSlice,
  IPFamily,
  LegacyEndpointAddress,
  LegacyEndpointPort,
  LegacyEndpoints,
  LegacyEndpointSubset,
  Node,
  Pod,
  Service,
  ServicePort,
} from './state.js';
import { murmur3 } from '../common/murmur3.js';

/** kube-controller-manager's default --max-endpoints-per-slice. */
export const DEFAULT_MAX_ENDPOINTS_PER_SLICE = 100;
/** kube-controller-manager's limit on --max-endpoints-per-slice. */
export const MAX_MAX_ENDPOINTS_PER_SLICE = 1000;
export const ENDPOINTSLICE_CONTROLLER = 'endpointslice-controller.k8s.io';
/** The Endpoints controller keeps at most this many addresses per Endpoints object. */
export const MAX_LEGACY_ENDPOINT_ADDRESSES = 1000;
export const OVER_CAPACITY_ANNOTATION = 'endpoints.kubernetes.io/over-capacity';

export interface ControllerOptions {
  /** --max-endpoints-per-slice; default 100. */
  maxEndpointsPerSlice?: number;
  /** The Nodes that exist; undefined: do not check the Pods' nodes. */
  nodeNames?: ReadonlySet<string>;
  /** The state's Nodes: where each endpoint's zone comes from and, for topology mode Auto, what zones are weighed by. */
  nodes?: readonly Node[];
  /** Where the controller's topology events go, one line each; unset: nowhere. */
  recordEvent?: (message: string) => void;
}

/** Whether the controller leaves a Pod out because its Node does not exist. */
export function onMissingNode(pod: Pod, service: Service, nodeNames: ReadonlySet<string> | undefined): boolean {
  return nodeNames !== undefined && !service.publishNotReadyAddresses && !nodeNames.has(pod.nodeName ?? '');
}

/** Whether the EndpointSlice controller manages this Service's slices. */
export function isControllerManaged(service: Service): boolean {
  return service.selector !== undefined && service.type !== 'ExternalName';
}

/** The Pods a Service selects: same namespace, every selector label equal. */
export function selectedPods(service: Service, pods: readonly Pod[]): Pod[] {
  const selector = service.selector;
  if (!selector) return [];
  return pods.filter(
    (pod) => pod.namespace === service.namespace && Object.entries(selector).every(([key, value]) => pod.labels[key] === value),
  );
}

/** ShouldPodBeInEndpoints: not terminal, has an IP; terminating ones only when asked. */
function isEndpointPod(pod: Pod, includeTerminating: boolean): boolean {
  if (pod.phase === 'Succeeded' || pod.phase === 'Failed') return false;
  if (pod.podIPs.length === 0) return false;
  return includeTerminating || !pod.terminating;
}

/** FindPort: the number a Service port's targetPort means on this Pod, undefined when the Pod has no such port. */
export function findPort(pod: Pod, port: ServicePort): number | undefined {
  if (typeof port.targetPort === 'number') return port.targetPort;
  const match = pod.containerPorts.find((p: ContainerPort) => p.name === port.targetPort && p.protocol === port.protocol);
  return match?.containerPort;
}

function familyOfIP(ip: string): IPFamily {
  return ipaddr.parse(ip).kind() === 'ipv4' ? 'IPv4' : 'IPv6';
}

/** ShouldSetHostname: a Pod with a hostname whose subdomain is the Service's name. */
function hostnameFor(pod: Pod, service: Service): string | undefined {
  return pod.hostname && pod.subdomain === service.name && pod.namespace === service.namespace ? pod.hostname : undefined;
}

function byName<T extends { namespace: string; name: string }>(a: T, b: T): number {
  const x = `${a.namespace}/${a.name}`;
  const y = `${b.namespace}/${b.name}`;
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The EndpointSlices the controller makes for one Service from the Pods of the state. */
export function endpointSlicesFor(service: Service, pods: readonly Pod[], opts: ControllerOptions = {}): EndpointSlice[] {
  if (!isControllerManaged(service)) return [];
  const max = opts.maxEndpointsPerSlice ?? DEFAULT_MAX_ENDPOINTS_PER_SLICE;
  const families = service.ipFamilies;
  const zones = new Map((opts.nodes ?? []).map((n) => [n.name, n.zone]));
  /** Port-set key → its ports and, per family, its endpoints. */
  const groups = new Map<string, { ports: EndpointPort[]; endpoints: Map<IPFamily, Endpoint[]> }>();
  for (const pod of selectedPods(service, pods).sort(byName)) {
    if (!isEndpointPod(pod, true) || onMissingNode(pod, service, opts.nodeNames)) continue;
    const ports: EndpointPort[] = [];
    for (const port of service.ports) {
      const number = findPort(pod, port);
      if (number === undefined) continue;
      ports.push({ name: port.name, protocol: port.protocol, port: number, appProtocol: port.appProtocol });
    }
    const key = JSON.stringify(ports.map((p) => [p.name, p.protocol, p.port, p.appProtocol ?? null]));
    let group = groups.get(key);
    if (!group) {
      group = { ports, endpoints: new Map() };
      groups.set(key, group);
    }
    const zone = zones.get(pod.nodeName ?? '');
    const serving = pod.ready;
    const ready = service.publishNotReadyAddresses || (serving && !pod.terminating);
    for (const family of families) {
      const addresses = pod.podIPs.filter((ip) => familyOfIP(ip) === family);
      if (addresses.length === 0) continue;
      const endpoint: Endpoint = {
        addresses,
        conditions: { ready, serving, terminating: pod.terminating },
        nodeName: pod.nodeName,
        ...(zone !== undefined && { zone }),
        hostname: hostnameFor(pod, service),
        targetRef: { kind: 'Pod', namespace: pod.namespace, name: pod.name },
      };
      group.endpoints.set(family, [...(group.endpoints.get(family) ?? []), endpoint]);
    }
  }

  const slices: EndpointSlice[] = [];
  for (const [key, group] of groups) {
    for (const family of families) {
      const endpoints = group.endpoints.get(family) ?? [];
      for (let i = 0; i < endpoints.length; i += max) {
        slices.push(slice(service, family, group.ports, endpoints.slice(i, i + max), `${key} ${i / max}`));
      }
    }
  }
  for (const family of families) {
    if (!slices.some((s) => s.addressType === family)) slices.push(slice(service, family, [], [], 'placeholder'));
  }
  for (const family of families) {
    const event = topologyHints(
      service,
      slices.filter((s) => s.addressType === family).flatMap((s) => s.endpoints),
      opts.nodes ?? [],
    );
    if (event) opts.recordEvent?.(`${service.origin.file}: ${service.origin.object}: ${family} endpoints: ${event}`);
  }
  return slices;
}

/** The zone label the controller copies from a Pod's Node to its endpoint. */
const ZONE_LABEL = 'topology.kubernetes.io/zone';
/** The trafficDistribution values the controller sets hints for (PreferSameZone and PreferSameNode: 1.33 and later, on by default from 1.34). */
const CLOSE_TRAFFIC_DISTRIBUTIONS = new Set(['PreferClose', 'PreferSameZone', 'PreferSameNode']);
/** The topology cache's overloadThreshold: no endpoint should get more than 20% over its share. */
const OVERLOAD_THRESHOLD = 0.2;

/**
 * Sets the hints of one family's endpoints of a Service, in place, as the
 * controller's reconciler does for new slices; returns what it would record as
 * an event when it sets none, or a note of svcpath's where the controller is
 * silent. Which rule applies:
 * - the topology annotation `Auto` (or `auto`): the topology cache's
 *   proportional allocation (`autoHints`); it wins over trafficDistribution;
 * - else trafficDistribution PreferClose, PreferSameZone or PreferSameNode:
 *   every ready endpoint is hinted for its own zone, and with PreferSameNode
 *   also for its own node (trafficdist's preferCloseHeuristic);
 * - else no hints.
 * Endpoints that are not ready never get hints.
 */
function topologyHints(service: Service, endpoints: Endpoint[], nodes: readonly Node[]): string | undefined {
  if (service.topologyAnnotation === 'Auto' || service.topologyAnnotation === 'auto') return autoHints(endpoints, nodes);
  if (!service.trafficDistribution || !CLOSE_TRAFFIC_DISTRIBUTIONS.has(service.trafficDistribution)) return undefined;
  const sameNode = service.trafficDistribution === 'PreferSameNode';
  const ready = endpoints.filter((e) => e.conditions.ready);
  for (const e of ready) {
    const forZones = e.zone ? [e.zone] : [];
    const forNodes = sameNode && e.nodeName ? [e.nodeName] : [];
    if (forZones.length + forNodes.length > 0) e.hints = { forZones, forNodes };
  }
  const unzoned = ready.filter((e) => !e.zone).length;
  // The controller says nothing here; kube-proxy then ignores the zone hints of every endpoint.
  return unzoned === 0
    ? undefined
    : `${unzoned} of ${ready.length} ready endpoints get no zone hint for ${service.trafficDistribution}: ` +
        `their Pod's Node has no ${ZONE_LABEL} label (or is not among the Nodes)`;
}

/**
 * The topology cache's hints for topology mode Auto (AddHints): each zone's
 * share of the ready endpoints is its share of the Nodes' allocatable CPU.
 * Every ready endpoint starts hinted for its own zone; zones over their share
 * then give endpoints (the first ones, in order) to zones under it, whole
 * endpoints only while at least half a one is owed. It gives up, setting no
 * hint at all, with the controller's TopologyAwareHintsDisabled event, when a
 * Node lacks a zone or allocatable CPU or the Nodes span fewer than two zones,
 * when there are fewer ready endpoints than zones, when the zones' minimum
 * shares (their share divided by 1.2, the 20% overload threshold, rounded up) add up to
 * more endpoints than there are, or when a ready endpoint has no zone.
 */
function autoHints(endpoints: Endpoint[], nodes: readonly Node[]): string | undefined {
  const disabled = (message: string, why = '') =>
    `no topology hints: the EndpointSlice controller's event TopologyAwareHintsDisabled: ${message}${why}`;
  const cpu = cpuByZone(nodes);
  if (typeof cpu === 'string') return disabled(INSUFFICIENT_NODE_INFO, ` (${cpu})`);
  const ready = endpoints.filter((e) => e.conditions.ready);
  const allocations = zoneAllocations(cpu, ready.length);
  if (typeof allocations === 'string') return disabled(allocations);
  if (ready.some((e) => !e.zone)) return disabled('One or more endpoints do not have a zone specified');

  const allocated = new Map<string, number>();
  for (const e of ready) {
    e.hints = { forZones: [e.zone!], forNodes: [] };
    allocated.set(e.zone!, (allocated.get(e.zone!) ?? 0) + 1);
  }
  const { giving, receiving } = givingAndReceivingZones(allocations, allocated);
  for (const e of ready) {
    const toGive = giving.get(e.zone!) ?? 0;
    const to = [...receiving].find(([, n]) => n > 0)?.[0];
    if (to === undefined) break;
    if (toGive === 0) continue;
    e.hints = { forZones: [to], forNodes: [] };
    giving.set(e.zone!, toGive - 1);
    receiving.set(to, receiving.get(to)! - 1);
  }
  return undefined;
}

const INSUFFICIENT_NODE_INFO = 'Insufficient Node information: allocatable CPU or zone not specified on one or more nodes';

/**
 * Allocatable millicores per zone, or why the topology cache has too little
 * Node information: a counted Node without zone or CPU, or fewer than two
 * zones. As the topology cache's SetNodes, Nodes with a control-plane role
 * label and Nodes whose Ready condition is not True are not counted. A Node
 * that states no Ready condition counts (the controller would leave it out):
 * a dump always has conditions, a hand-written state seldom does.
 */
function cpuByZone(nodes: readonly Node[]): Map<string, number> | string {
  const cpu = new Map<string, number>();
  for (const node of nodes) {
    if (node.controlPlane || node.notReady) continue;
    if (!node.zone) return `Node ${node.name} has no ${ZONE_LABEL} label`;
    if (!node.allocatableMilliCPU) return `Node ${node.name} has no status.allocatable.cpu`;
    cpu.set(node.zone, (cpu.get(node.zone) ?? 0) + node.allocatableMilliCPU);
  }
  if (cpu.size === 0) return nodes.length === 0 ? 'the state has no Nodes' : 'no Ready Node without a control-plane role';
  if (cpu.size < 2) return `every Ready Node without a control-plane role is in zone ${[...cpu.keys()][0]}`;
  return cpu;
}

/** Each zone's desired number of endpoints (at least its minimum), or the event message when the endpoints cannot be shared out. */
function zoneAllocations(cpu: Map<string, number>, endpoints: number): Map<string, number> | string {
  const zones = `(${endpoints} endpoints, ${cpu.size} zones)`;
  if (cpu.size > endpoints) return `Insufficient number of endpoints ${zones}`;
  const total = [...cpu.values()].reduce((a, b) => a + b, 0);
  const desired = new Map<string, number>();
  let minTotal = 0;
  for (const [zone, milli] of cpu) {
    const share = (milli / total) * endpoints;
    // The same floating-point steps as the controller, so that a share on a boundary rounds alike.
    const minimum = Math.ceil(share * (1 / (1 + OVERLOAD_THRESHOLD)));
    desired.set(zone, Math.max(share, minimum));
    minTotal += minimum;
  }
  if (minTotal > endpoints) {
    return `Unable to allocate minimum required endpoints to each zone without exceeding overload threshold ${zones}`;
  }
  return desired;
}

/**
 * How many endpoints each zone gives away and receives (getGivingAndReceivingZones):
 * repeatedly one from the zone most over its desired share to the zone most under
 * it, while both are owed at least half an endpoint and one of them a whole one.
 * Ties go to the zone first by name, where the controller's map order is random.
 */
function givingAndReceivingZones(
  desired: Map<string, number>,
  allocated: Map<string, number>,
): { giving: Map<string, number>; receiving: Map<string, number> } {
  const over = new Map<string, number>();
  const under = new Map<string, number>();
  for (const [zone, target] of desired) {
    const have = allocated.get(zone) ?? 0;
    if (have > target) over.set(zone, have - target);
    else if (have < target) under.set(zone, target - have);
  }
  const giving = new Map<string, number>();
  const receiving = new Map<string, number>();
  for (;;) {
    const [from, toGive] = most(over);
    const [to, toReceive] = most(under);
    if (from === undefined || to === undefined || (toGive < 1 && toReceive < 1) || toGive < 0.5 || toReceive < 0.5) break;
    giving.set(from, (giving.get(from) ?? 0) + 1);
    over.set(from, toGive - 1);
    receiving.set(to, (receiving.get(to) ?? 0) + 1);
    under.set(to, toReceive - 1);
  }
  return { giving, receiving: new Map([...receiving].sort(([a], [b]) => (a < b ? -1 : 1))) };
}

/** The zone with the greatest positive amount, the first by name among equals. */
function most(amounts: Map<string, number>): [string | undefined, number] {
  let best: [string | undefined, number] = [undefined, 0];
  for (const [zone, n] of [...amounts].sort(([a], [b]) => (a < b ? -1 : 1))) if (n > best[1]) best = [zone, n];
  return best;
}

/** The characters of the API server's generated name suffixes (no vowels, no confusable digits). */
const NAME_ALPHABET = 'bcdfghjklmnpqrstvwxz2456789';

function slice(service: Service, family: IPFamily, ports: EndpointPort[], endpoints: Endpoint[], discriminator: string): EndpointSlice {
  const seed = `${service.namespace}/${service.name} ${family} ${discriminator}`;
  let h = murmur3(new TextEncoder().encode(seed), 0x5eed) >>> 0;
  let suffix = '';
  for (let i = 0; i < 5; i++) {
    suffix += NAME_ALPHABET[h % NAME_ALPHABET.length];
    h = Math.floor(h / NAME_ALPHABET.length);
  }
  // generateName: the prefix cut to leave room for the 5 characters in 63.
  const name = `${service.name}-`.slice(0, 58) + suffix;
  return {
    origin: { file: `${service.origin.file} (derived from Pods)`, object: `EndpointSlice ${service.namespace}/${name}` },
    namespace: service.namespace,
    name,
    serviceName: service.name,
    addressType: family,
    endpoints,
    ports,
    managedBy: ENDPOINTSLICE_CONTROLLER,
    derived: true,
  };
}

/** The controller's slices for every Service it manages and for which `hasSlices` says none were given. */
export function deriveEndpointSlices(
  services: readonly Service[],
  pods: readonly Pod[],
  opts: ControllerOptions & { hasSlices?: (service: Service) => boolean } = {},
): EndpointSlice[] {
  return services.filter((s) => isControllerManaged(s) && !opts.hasSlices?.(s)).flatMap((s) => endpointSlicesFor(s, pods, opts));
}

/**
 * The legacy v1 Endpoints object the Endpoints controller makes for a Service:
 * addresses of its first IP family; ready (or publishNotReadyAddresses) Pods in
 * `addresses`, others in `notReadyAddresses`; terminating Pods left out unless
 * publishNotReadyAddresses; subsets repacked by port set, addresses sorted by
 * IP. Past 1000 addresses the object is truncated as the controller does
 * (truncateLegacy) and annotated `endpoints.kubernetes.io/over-capacity: truncated`.
 */
export function legacyEndpointsFor(service: Service, pods: readonly Pod[]): { endpoints: LegacyEndpoints; truncated: number } | undefined {
  if (!isControllerManaged(service)) return undefined;
  const family = service.ipFamilies[0];
  const tolerate = service.publishNotReadyAddresses;
  /** Port-set key → subset. */
  const subsets = new Map<string, LegacyEndpointSubset>();
  for (const pod of selectedPods(service, pods).sort(byName)) {
    if (!isEndpointPod(pod, tolerate)) continue;
    const ip = pod.podIPs.find((a) => familyOfIP(a) === family);
    if (ip === undefined) continue;
    const address: LegacyEndpointAddress = { ip, nodeName: pod.nodeName, hostname: hostnameFor(pod, service) };
    const ports: LegacyEndpointPort[] = [];
    for (const port of service.ports) {
      const number = findPort(pod, port);
      if (number !== undefined) ports.push({ name: port.name, protocol: port.protocol, port: number, appProtocol: port.appProtocol });
    }
    // A Pod none of whose ports resolve is in no subset (a headless Service without ports excepted).
    if (ports.length === 0 && service.ports.length > 0) continue;
    ports.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const key = JSON.stringify(ports);
    const subset = subsets.get(key) ?? { addresses: [], notReadyAddresses: [], ports };
    subsets.set(key, subset);
    (tolerate || (pod.ready && !pod.terminating) ? subset.addresses : subset.notReadyAddresses).push(address);
  }
  const list = [...subsets.values()];
  const byIP = (a: LegacyEndpointAddress, b: LegacyEndpointAddress) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0);
  for (const s of list) {
    s.addresses.sort(byIP);
    s.notReadyAddresses.sort(byIP);
  }
  const total = truncateLegacy(list);
  return {
    endpoints: {
      origin: { file: `${service.origin.file} (derived from Pods)`, object: `Endpoints ${service.namespace}/${service.name}` },
      namespace: service.namespace,
      name: service.name,
      subsets: list.filter((s) => s.addresses.length + s.notReadyAddresses.length > 0),
    },
    truncated: Math.max(0, total - MAX_LEGACY_ENDPOINT_ADDRESSES),
  };
}

/**
 * The Endpoints controller's truncation past 1000 addresses, in place: when the
 * ready addresses alone are too many, each subset keeps its proportion of 1000
 * (rounded up, the last ones getting what is left) of them and no not-ready
 * ones; otherwise all ready ones stay and the not-ready ones share what is left
 * the same way. Returns the number of addresses before.
 */
function truncateLegacy(subsets: LegacyEndpointSubset[]): number {
  const ready = subsets.reduce((n, s) => n + s.addresses.length, 0);
  const notReady = subsets.reduce((n, s) => n + s.notReadyAddresses.length, 0);
  if (ready + notReady <= MAX_LEGACY_ENDPOINT_ADDRESSES) return ready + notReady;
  const truncateReady = ready > MAX_LEGACY_ENDPOINT_ADDRESSES;
  const max = truncateReady ? MAX_LEGACY_ENDPOINT_ADDRESSES : MAX_LEGACY_ENDPOINT_ADDRESSES - ready;
  const of = truncateReady ? ready : notReady;
  let room = max;
  for (const s of subsets) {
    const n = truncateReady ? s.addresses.length : s.notReadyAddresses.length;
    const keep = Math.min(Math.ceil((n / of) * max), room);
    if (truncateReady) {
      s.addresses = s.addresses.slice(0, keep);
      s.notReadyAddresses = [];
      room -= s.addresses.length;
    } else {
      s.notReadyAddresses = s.notReadyAddresses.slice(0, keep);
      room -= s.notReadyAddresses.length;
    }
  }
  return ready + notReady;
}
