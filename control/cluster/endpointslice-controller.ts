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
 *   placeholder slice.
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
    const serving = pod.ready;
    const ready = service.publishNotReadyAddresses || (serving && !pod.terminating);
    for (const family of families) {
      const addresses = pod.podIPs.filter((ip) => familyOfIP(ip) === family);
      if (addresses.length === 0) continue;
      const endpoint: Endpoint = {
        addresses,
        conditions: { ready, serving, terminating: pod.terminating },
        nodeName: pod.nodeName,
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
  return slices;
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
