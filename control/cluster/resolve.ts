/**
 * Joining Services with their EndpointSlices the way kube-proxy's
 * EndpointSliceCache does, so each Service port ends up with the backends a
 * node would program for it.
 */
import type {
  ClusterState, EndpointSlice, ResolvedEndpoint, ResolvedPort, ResolvedService, Service, ServicePort,
} from '../model.js';

export interface Resolution {
  services: ResolvedService[];
  /** Slices that contributed nothing, and why. */
  notes: string[];
}

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

  const services = state.services.map((service): ResolvedService => {
    const slices = (slicesByService.get(`${service.namespace}/${service.name}`) ?? [])
      .filter((slice) => isUsable(slice, service, notes));
    return { service, ports: service.ports.map((port) => resolvePort(service, port, slices, notes)) };
  });
  return { services, notes };
}

function isUsable(slice: EndpointSlice, service: Service, notes: string[]): boolean {
  if (slice.addressType === 'FQDN') {
    notes.push(`${where(slice)}: ignored: FQDN EndpointSlices are not supported (kube-proxy ignores them too)`);
    return false;
  }
  if (!service.ipFamilies.includes(slice.addressType)) {
    notes.push(`${where(slice)}: ignored: addressType ${slice.addressType} is not among the IP families `
      + `of Service ${service.namespace}/${service.name} (${service.ipFamilies.join(', ') || 'none'})`);
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
      notes.push(`${where(slice)}: port ${JSON.stringify(port.name)} has no number and Service `
        + `${service.namespace}/${service.name} names its targetPort ${JSON.stringify(port.targetPort)}; skipped`);
      continue;
    }
    for (const endpoint of slice.endpoints) {
      // kube-proxy uses only the first address of an endpoint.
      const ip = endpoint.addresses[0];
      const key = `${ip} ${number}`;
      if (seen.has(key)) continue;
      seen.add(key);
      endpoints.push({ ip, port: number, conditions: endpoint.conditions, nodeName: endpoint.nodeName });
    }
  }
  return { port, endpoints };
}

function where(slice: EndpointSlice): string {
  return `${slice.origin.file}: ${slice.origin.object}`;
}
