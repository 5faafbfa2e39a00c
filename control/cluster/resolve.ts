/**
 * Joining Services with their EndpointSlices the way kube-proxy's
 * EndpointSliceCache does, so each Service port ends up with the backends a
 * node would program for it. A Service without EndpointSlices falls back on
 * its legacy Endpoints object, turned into the slices the EndpointSlice
 * mirroring controller would make of it.
 */
import ipaddr from 'ipaddr.js';
import type {
  ClusterState,
  Endpoint,
  EndpointSlice,
  EndpointsSource,
  IPFamily,
  LegacyEndpointAddress,
  LegacyEndpoints,
  ResolvedEndpoint,
  ResolvedPort,
  ResolvedService,
  Service,
  ServicePort,
} from './state.js';

export interface Resolution {
  services: ResolvedService[];
  /** Slices and Endpoints that contributed nothing or only part, and why. */
  notes: string[];
}

/** The most addresses of one Endpoints object that are used, as the Endpoints controller truncates them. */
const MAX_LEGACY_ENDPOINT_ADDRESSES = 1000;
const OVER_CAPACITY_ANNOTATION = 'endpoints.kubernetes.io/over-capacity';
const MIRRORING_CONTROLLER = 'endpointslicemirroring-controller.k8s.io';

export function resolveServices(state: ClusterState): Resolution {
  const notes: string[] = [];
  const slicesByService = new Map<string, EndpointSlice[]>();
  const bySliceName = [...state.endpointSlices].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const slice of bySliceName) {
    const key = `${slice.namespace}/${slice.serviceName}`;
    slicesByService.set(key, [...(slicesByService.get(key) ?? []), slice]);
  }

  const serviceKeys = new Set(state.services.map((s) => `${s.namespace}/${s.name}`));
  for (const [key, slices] of slicesByService) {
    if (serviceKeys.has(key)) continue;
    for (const slice of slices) notes.push(`${where(slice)}: ignored: its Service ${key} does not exist`);
  }
  const legacyByService = new Map<string, LegacyEndpoints>();
  for (const endpoints of state.legacyEndpoints ?? []) {
    const key = `${endpoints.namespace}/${endpoints.name}`;
    if (serviceKeys.has(key)) legacyByService.set(key, endpoints);
    else notes.push(`${where(endpoints)}: ignored: its Service ${key} does not exist`);
  }

  const services = state.services.map((service): ResolvedService => {
    const key = `${service.namespace}/${service.name}`;
    // EndpointSlices win: the Endpoints object is only the fallback of a Service that has none.
    const legacy = legacyByService.get(key);
    const given = slicesByService.get(key);
    const endpointsFrom: EndpointsSource = given
      ? given.every((slice) => slice.derived)
        ? 'Pods'
        : 'EndpointSlices'
      : legacy
        ? 'Endpoints'
        : 'none';
    const slices = (given ?? (legacy ? mirror(legacy, service, notes) : [])).filter((slice) => isUsable(slice, service, notes));
    return { service, endpointsFrom, ports: service.ports.map((port) => resolvePort(service, port, slices, notes)) };
  });
  return { services, notes };
}

/**
 * The EndpointSlices of a Service's Endpoints object, as the mirroring controller
 * makes them: `addresses` ready and serving, `notReadyAddresses` neither, none
 * terminating; a slice per subset and address family, for the Service's families
 * only. Past 1000 addresses only the first 1000 are kept, ready ones first. The
 * ready slices come before the not-ready ones, so an address listed as both for a
 * port counts as ready, as the API's subset repacking has it.
 */
function mirror(endpoints: LegacyEndpoints, service: Service, notes: string[]): EndpointSlice[] {
  const total = endpoints.subsets.reduce((n, s) => n + s.addresses.length + s.notReadyAddresses.length, 0);
  let room = MAX_LEGACY_ENDPOINT_ADDRESSES;
  const keep = (addresses: LegacyEndpointAddress[]) => {
    const kept = addresses.slice(0, room);
    room -= kept.length;
    return kept;
  };
  const ready = endpoints.subsets.map((subset) => keep(subset.addresses));
  const notReady = endpoints.subsets.map((subset) => keep(subset.notReadyAddresses));
  if (total > MAX_LEGACY_ENDPOINT_ADDRESSES) {
    notes.push(
      `${where(endpoints)}: ${total} addresses exceed the capacity of ${MAX_LEGACY_ENDPOINT_ADDRESSES} ` +
        `(the API marks it ${OVER_CAPACITY_ANNOTATION}: truncated): only the first ${MAX_LEGACY_ENDPOINT_ADDRESSES}, ` +
        `ready ones first, are used; ${total - MAX_LEGACY_ENDPOINT_ADDRESSES} dropped`,
    );
  }

  const familyOf = (address: LegacyEndpointAddress): IPFamily => (ipaddr.parse(address.ip).kind() === 'ipv4' ? 'IPv4' : 'IPv6');
  const otherFamilies = new Set(
    [...ready, ...notReady]
      .flat()
      .map(familyOf)
      .filter((f) => !service.ipFamilies.includes(f)),
  );
  for (const family of otherFamilies) {
    notes.push(
      `${where(endpoints)}: its ${family} addresses are ignored: ${family} is not among the IP families ` +
        `of Service ${service.namespace}/${service.name} (${service.ipFamilies.join(', ') || 'none'})`,
    );
  }

  const slices: EndpointSlice[] = [];
  const add = (addresses: LegacyEndpointAddress[], subsetIndex: number, isReady: boolean) => {
    for (const addressType of service.ipFamilies) {
      const inFamily = addresses.filter((a) => familyOf(a) === addressType);
      if (inFamily.length === 0) continue;
      slices.push({
        origin: endpoints.origin,
        namespace: endpoints.namespace,
        name: endpoints.name,
        serviceName: endpoints.name,
        addressType,
        endpoints: inFamily.map(
          (a): Endpoint => ({
            addresses: [a.ip],
            conditions: { ready: isReady, serving: isReady, terminating: false },
            nodeName: a.nodeName,
            hostname: a.hostname,
          }),
        ),
        ports: endpoints.subsets[subsetIndex].ports,
        managedBy: MIRRORING_CONTROLLER,
      });
    }
  };
  ready.forEach((addresses, i) => add(addresses, i, true));
  notReady.forEach((addresses, i) => add(addresses, i, false));
  return slices;
}

function isUsable(slice: EndpointSlice, service: Service, notes: string[]): boolean {
  if (slice.addressType === 'FQDN') {
    notes.push(`${where(slice)}: ignored: FQDN EndpointSlices are not supported (kube-proxy ignores them too)`);
    return false;
  }
  if (!service.ipFamilies.includes(slice.addressType)) {
    notes.push(
      `${where(slice)}: ignored: addressType ${slice.addressType} is not among the IP families ` +
        `of Service ${service.namespace}/${service.name} (${service.ipFamilies.join(', ') || 'none'})`,
    );
    return false;
  }
  return true;
}

/**
 * The backends of one Service port: the endpoints of every slice with a port of the
 * same name and protocol, on that slice port's number. This is how a named
 * targetPort resolves — kube-proxy never reads targetPort itself.
 */
function resolvePort(service: Service, port: ServicePort, slices: EndpointSlice[], notes: string[]): ResolvedPort {
  const endpoints: ResolvedEndpoint[] = [];
  const seen = new Set<string>();
  for (const slice of slices) {
    const slicePort = slice.ports.find((p) => p.name === port.name && p.protocol === port.protocol);
    if (!slicePort) continue;
    const number = slicePort.port ?? (typeof port.targetPort === 'number' ? port.targetPort : undefined);
    if (number === undefined) {
      notes.push(
        `${where(slice)}: port ${JSON.stringify(port.name)} has no number and Service ` +
          `${service.namespace}/${service.name} names its targetPort ${JSON.stringify(port.targetPort)}; skipped`,
      );
      continue;
    }
    for (const endpoint of slice.endpoints) {
      // kube-proxy uses only the first address of an endpoint.
      const ip = endpoint.addresses[0];
      const key = `${ip} ${number}`;
      if (seen.has(key)) continue;
      seen.add(key);
      endpoints.push({
        ip,
        port: number,
        conditions: endpoint.conditions,
        nodeName: endpoint.nodeName,
        ...(endpoint.zone ? { zone: endpoint.zone } : {}),
        ...(endpoint.hints ? { hints: endpoint.hints } : {}),
      });
    }
  }
  return { port, endpoints };
}

function where(object: EndpointSlice | LegacyEndpoints): string {
  return `${object.origin.file}: ${object.origin.object}`;
}
