/**
 * What the API server fills in when a Service is created without it: cluster
 * IPs from the service cluster IP ranges (KEP-3070, KEP-1880) and NodePorts
 * from --service-node-port-range (KEP-3668). Both allocators split their range
 * into a static band at the bottom, left to users who pick their own numbers,
 * and a dynamic band above it that automatic allocation draws from first, so
 * that an automatic choice rarely takes a number somebody is about to ask for.
 * With several ranges of a family (ServiceCIDRs), the API server's
 * MetaAllocator tries them in Go map order, which is random, and moves on from
 * a full one.
 *
 * The API server picks at random; here the randomness is seeded and Services
 * are served in namespace/name order, so the same state and seed always get the
 * same numbers. A range or the NodePort range being full is a warning: the
 * Service goes without that cluster IP or NodePort.
 */
import { Mulberry32 } from '../common/random.js';
import ipaddr from 'ipaddr.js';
import type { ClusterState, IPFamily, Service, ServicePort } from './state.js';
import { DEFAULT_ALLOCATION_RANGES } from './service-ranges.js';
import type { Warnings } from './warnings.js';

export interface AllocateOptions {
  /** Both ends included. */
  serviceNodePortRange: [number, number];
  seed: number;
  /** Addresses that are taken although no Service of the state has them (IPAddress objects). */
  takenIPs?: string[];
  warnings: Warnings;
}

/** min(max(min, size/step), max), the static band's size; none for a range of at most `min` slots. */
interface BandRule {
  min: bigint;
  max: bigint;
  step: bigint;
}

const CLUSTER_IP_BANDS: BandRule = { min: 16n, max: 256n, step: 16n };
const NODE_PORT_BANDS: BandRule = { min: 16n, max: 128n, step: 32n };

/**
 * The state with every missing cluster IP and NodePort allocated, and a note for
 * each. A number already in use — given to any Service, held by an IPAddress
 * object, or used as an endpoint address — is never handed out. Cluster IPs
 * come from the state's allocatable ranges (the defaults for a state without).
 */
export function allocate(state: ClusterState, opts: AllocateOptions): ClusterState {
  const clusterIPRanges = new ClusterIPRanges(state.serviceRanges?.allocatable ?? DEFAULT_ALLOCATION_RANGES, opts.seed);
  const nodePorts = new NodePortRange(opts.serviceNodePortRange, opts.seed);

  const reserveIP = (ip: string) => clusterIPRanges.reserve(ip);
  (opts.takenIPs ?? []).forEach(reserveIP);
  for (const service of state.services) {
    // A frontend address of one Service must not become another's cluster IP.
    for (const ip of [...service.clusterIPs, ...service.externalIPs]) if (ip !== 'None') reserveIP(ip);
    for (const ingress of service.loadBalancerIngress) if (ingress.ip) reserveIP(ingress.ip);
    for (const port of service.ports) if (port.nodePort !== undefined) nodePorts.reserve(port.nodePort);
    if (service.healthCheckNodePort !== undefined) nodePorts.reserve(service.healthCheckNodePort);
  }
  // An endpoint must not be a cluster IP (validate.ts refuses it), so no endpoint's address may become one.
  for (const slice of state.endpointSlices) {
    if (slice.addressType !== 'FQDN') for (const endpoint of slice.endpoints) endpoint.addresses.forEach(reserveIP);
  }
  for (const endpoints of state.legacyEndpoints ?? []) {
    for (const subset of endpoints.subsets) {
      for (const address of [...subset.addresses, ...subset.notReadyAddresses]) reserveIP(address.ip);
    }
  }

  const notes: string[] = [];
  const warn = (service: Service, path: string, problem: string) =>
    opts.warnings.add([service.origin.file, service.origin.object, path], problem);
  const services = [...state.services];
  const order = services.map((_, i) => i).sort((a, b) => compareByNamespaceAndName(services[a], services[b]));
  for (const i of order) {
    const service = services[i];
    services[i] = {
      ...service,
      clusterIPs: allocateClusterIPs(service, clusterIPRanges, notes, warn),
      ports: allocateNodePorts(service, nodePorts, notes, warn),
      healthCheckNodePort: allocateHealthCheckNodePort(service, nodePorts, notes, warn),
    };
  }
  return { ...state, services, notes: [...state.notes, ...notes] };
}

type Warn = (service: Service, path: string, problem: string) => void;

/**
 * One cluster IP per entry of spec.ipFamilies, in that order; none for headless
 * and ExternalName Services, and none of a family without a free address.
 */
function allocateClusterIPs(service: Service, ranges: ClusterIPRanges, notes: string[], warn: Warn): string[] {
  if (service.type === 'ExternalName' || service.clusterIPs[0] === 'None') return service.clusterIPs;
  return service.ipFamilies.flatMap((family, i) => {
    const given = service.clusterIPs.find((ip) => familyOf(ip) === family);
    if (given) return [given];
    const ip = ranges.allocate(family);
    if (ip === undefined) {
      warn(
        service,
        `spec.clusterIPs[${i}]`,
        `cannot allocate a cluster IP: ${ranges.fullProblem(family)}; ` + `the Service gets no ${family} cluster IP`,
      );
      return [];
    }
    notes.push(`allocated clusterIP ${ip} to Service ${service.namespace}/${service.name}`);
    return [ip];
  });
}

/**
 * A nodePort for every port of a NodePort Service, and of a LoadBalancer Service
 * unless allocateLoadBalancerNodePorts is false. Ports with the same number (DNS
 * on 53/UDP and 53/TCP) share one, given or allocated, as the API server does.
 */
function allocateNodePorts(service: Service, nodePorts: NodePortRange, notes: string[], warn: Warn): ServicePort[] {
  const wanted = service.type === 'NodePort' || (service.type === 'LoadBalancer' && service.allocateLoadBalancerNodePorts);
  if (!wanted) return service.ports;
  const holderByNumber = new Map<number, ServicePort>();
  for (const port of service.ports) {
    if (port.nodePort !== undefined && !holderByNumber.has(port.port)) holderByNumber.set(port.port, port);
  }
  const owner = `Service ${service.namespace}/${service.name}`;
  return service.ports.map((port, i) => {
    if (port.nodePort !== undefined) return port;
    const holder = holderByNumber.get(port.port);
    if (holder) {
      notes.push(
        `allocated nodePort ${holder.nodePort} to ${owner} port ${portLabel(port)}, ` +
          `shared with port ${portLabel(holder)} of the same number`,
      );
      return { ...port, nodePort: holder.nodePort };
    }
    const nodePort = nodePorts.allocate();
    if (nodePort === undefined) {
      warn(service, `spec.ports[${i}].nodePort`, `${nodePorts.fullProblem('a nodePort')}; the port gets no NodePort`);
      return port;
    }
    notes.push(`allocated nodePort ${nodePort} to ${owner} port ${portLabel(port)}`);
    const allocated = { ...port, nodePort };
    holderByNumber.set(port.port, allocated);
    return allocated;
  });
}

/** A LoadBalancer that keeps external traffic on the receiving node needs a port for its health checks. */
function allocateHealthCheckNodePort(service: Service, nodePorts: NodePortRange, notes: string[], warn: Warn): number | undefined {
  const needed = service.type === 'LoadBalancer' && service.externalTrafficPolicy === 'Local';
  if (!needed || service.healthCheckNodePort !== undefined) return service.healthCheckNodePort;
  const port = nodePorts.allocate();
  if (port === undefined) {
    warn(
      service,
      'spec.healthCheckNodePort',
      `${nodePorts.fullProblem('a healthCheckNodePort')}; nothing in the datapath listens on it, so it changes nothing`,
    );
    return undefined;
  }
  notes.push(`allocated healthCheckNodePort ${port} to Service ${service.namespace}/${service.name}`);
  return port;
}

function portLabel(port: ServicePort): string {
  return port.name || String(port.port);
}

function compareByNamespaceAndName(a: Service, b: Service): number {
  if (a.namespace !== b.namespace) return a.namespace < b.namespace ? -1 : 1;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

// ---------------------------------------------------------------------------
// Ranges

/** The ranges of each family, tried from a seeded random one on, as the MetaAllocator tries them in Go map order. */
class ClusterIPRanges {
  private readonly byFamily = new Map<IPFamily, ClusterIPRange[]>();
  private readonly random: Mulberry32;

  constructor(cidrs: string[], seed: number) {
    for (const cidr of cidrs) {
      const range = new ClusterIPRange(cidr, seed);
      this.byFamily.set(range.family, [...(this.byFamily.get(range.family) ?? []), range]);
    }
    this.random = new Mulberry32(seed);
  }

  /** Marks an IP as taken in every range that holds it (ServiceCIDRs may overlap). */
  reserve(ip: string): void {
    for (const range of this.byFamily.get(familyOf(ip)) ?? []) range.reserve(ip);
  }

  allocate(family: IPFamily): string | undefined {
    const ranges = this.byFamily.get(family) ?? [];
    const start = ranges.length > 1 ? this.random.int(0, ranges.length - 1) : 0;
    for (let i = 0; i < ranges.length; i++) {
      const ip = ranges[(start + i) % ranges.length].allocate();
      if (ip === undefined) continue;
      this.reserve(ip);
      return ip;
    }
    return undefined;
  }

  fullProblem(family: IPFamily): string {
    const ranges = this.byFamily.get(family) ?? [];
    if (ranges.length === 0) return `no service cluster IP range of family ${family} is configured`;
    return (
      `the service cluster IP range${ranges.length === 1 ? '' : 's'} ${ranges.map((r) => r.cidr).join(', ')} ` +
      `${ranges.length === 1 ? 'is' : 'are'} full`
    );
  }
}

/** One service cluster IP range: the network address is never handed out, nor IPv4's broadcast address. */
class ClusterIPRange {
  readonly family: IPFamily;
  /** Canonical CIDR, for messages. */
  readonly cidr: string;
  private readonly first: bigint;
  private readonly byteLength: number;
  private readonly slots: Slots;

  constructor(text: string, seed: number) {
    const [, prefix] = ipaddr.parseCIDR(text);
    const network = ipaddr.IPv4.isValidCIDR(text) ? ipaddr.IPv4.networkAddressFromCIDR(text) : ipaddr.IPv6.networkAddressFromCIDR(text);
    this.family = network.kind() === 'ipv4' ? 'IPv4' : 'IPv6';
    this.cidr = `${network.toString()}/${prefix}`;
    this.byteLength = network.toByteArray().length;
    const size = 1n << BigInt(this.byteLength * 8 - prefix);
    const unusable = this.family === 'IPv4' ? 2n : 1n;
    this.first = toBigInt(network.toByteArray()) + 1n;
    // The static band is sized on the whole CIDR but, like the API server's, counted from network + 1.
    this.slots = new Slots(size > unusable ? size - unusable : 0n, staticBandSize(size, CLUSTER_IP_BANDS), seed);
  }

  /** Marks an IP as taken; one outside the range is ignored. */
  reserve(ip: string): void {
    this.slots.reserve(toBigInt(ipaddr.parse(ip).toByteArray()) - this.first);
  }

  allocate(): string | undefined {
    const slot = this.slots.take();
    return slot === undefined ? undefined : fromBigInt(this.first + slot, this.byteLength);
  }
}

class NodePortRange {
  private readonly first: number;
  private readonly last: number;
  private readonly slots: Slots;

  constructor([first, last]: [number, number], seed: number) {
    this.first = first;
    this.last = last;
    const size = BigInt(last - first + 1);
    this.slots = new Slots(size, staticBandSize(size, NODE_PORT_BANDS), seed);
  }

  /** Marks a port as taken; one outside the range is ignored. */
  reserve(port: number): void {
    this.slots.reserve(BigInt(port - this.first));
  }

  allocate(): number | undefined {
    const slot = this.slots.take();
    return slot === undefined ? undefined : this.first + Number(slot);
  }

  fullProblem(what: string): string {
    return `cannot allocate ${what}: the NodePort range ${this.first}-${this.last} is full`;
  }
}

function staticBandSize(rangeSize: bigint, { min, max, step }: BandRule): bigint {
  if (rangeSize <= min) return 0n;
  const size = rangeSize / step;
  return size < min ? min : size > max ? max : size;
}

/**
 * Slots 0..size-1 of a range, the lowest `staticSize` of them the static band,
 * picked as the API server's randomScanStrategyWithOffset picks: a random slot
 * of the dynamic band, then the next free one upward, wrapping within the band;
 * the same in the static band only when the dynamic band is full.
 */
class Slots {
  private readonly taken = new Set<bigint>();
  private takenStatic = 0n;
  private readonly random: Mulberry32;

  constructor(
    private readonly size: bigint,
    private readonly staticSize: bigint,
    seed: number,
  ) {
    this.random = new Mulberry32(seed);
  }

  reserve(slot: bigint): void {
    if (slot < 0n || slot >= this.size || this.taken.has(slot)) return;
    this.taken.add(slot);
    if (slot < this.staticSize) this.takenStatic++;
  }

  /** A free slot, now taken; undefined when both bands are full. */
  take(): bigint | undefined {
    const takenDynamic = BigInt(this.taken.size) - this.takenStatic;
    let slot: bigint | undefined;
    if (takenDynamic < this.size - this.staticSize) slot = this.probe(this.staticSize, this.size);
    else if (this.takenStatic < this.staticSize) slot = this.probe(0n, this.staticSize);
    if (slot !== undefined) this.reserve(slot);
    return slot;
  }

  /** The first free slot of [start, end) from a random one on, wrapping around; the band must have one. */
  private probe(start: bigint, end: bigint): bigint {
    const bandSize = end - start;
    const offset = this.random.below(bandSize);
    for (let i = 0n; ; i++) {
      const slot = start + ((offset + i) % bandSize);
      if (!this.taken.has(slot)) return slot;
    }
  }
}

function familyOf(ip: string): IPFamily {
  return ipaddr.parse(ip).kind() === 'ipv4' ? 'IPv4' : 'IPv6';
}

function toBigInt(bytes: number[]): bigint {
  return bytes.reduce((n, byte) => (n << 8n) | BigInt(byte), 0n);
}

function fromBigInt(n: bigint, byteLength: number): string {
  const bytes = Array.from({ length: byteLength }, (_, i) => Number((n >> BigInt(8 * (byteLength - 1 - i))) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}
