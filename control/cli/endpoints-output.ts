/**
 * `svcpath endpoints`: the EndpointSlices the EndpointSlice controller derives
 * from the Pods of a cluster state (and, with --legacy, the v1 Endpoints the
 * Endpoints controller makes of them), printed as `kubectl get endpointslices`
 * prints them: a table, or `-o yaml` / `-o json` List documents with the
 * fields in kubectl's (alphabetical) order.
 */
import { stringify } from 'yaml';
import { legacyEndpointsFor, MAX_LEGACY_ENDPOINT_ADDRESSES, OVER_CAPACITY_ANNOTATION } from '../cluster/endpointslice-controller.js';
import type { ClusterState, EndpointHints, EndpointSlice, LegacyEndpointAddress, LegacyEndpoints } from '../cluster/state.js';

const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';
const HEADLESS_LABEL = 'service.kubernetes.io/headless';

/** The slices of the state the controller derived from Pods, by namespace and name. */
export function derivedSlices(state: ClusterState): EndpointSlice[] {
  return state.endpointSlices.filter((s) => s.derived).sort((a, b) => (`${a.namespace}/${a.name}` < `${b.namespace}/${b.name}` ? -1 : 1));
}

/** The Endpoints controller's objects for the Services whose slices were derived. */
export function derivedLegacyEndpoints(state: ClusterState): Array<{ endpoints: LegacyEndpoints; truncated: number }> {
  const keys = new Set(derivedSlices(state).map((s) => `${s.namespace}/${s.serviceName}`));
  return state.services.filter((s) => keys.has(`${s.namespace}/${s.name}`)).flatMap((s) => legacyEndpointsFor(s, state.pods ?? []) ?? []);
}

/** An EndpointSlice as the API returns it. */
export function sliceObject(slice: EndpointSlice, headless = false): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      ...(slice.derived ? { generateName: `${slice.serviceName}-` } : {}),
      labels: {
        ...(slice.managedBy ? { [MANAGED_BY_LABEL]: slice.managedBy } : {}),
        [SERVICE_NAME_LABEL]: slice.serviceName,
        ...(headless ? { [HEADLESS_LABEL]: '' } : {}),
      },
      name: slice.name,
      namespace: slice.namespace,
      ...(slice.derived
        ? {
            ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: slice.serviceName }],
          }
        : {}),
    },
    addressType: slice.addressType,
    // The API returns null for a slice without endpoints.
    endpoints:
      slice.endpoints.length === 0
        ? null
        : slice.endpoints.map((e) => ({
            addresses: e.addresses,
            conditions: { ready: e.conditions.ready, serving: e.conditions.serving, terminating: e.conditions.terminating },
            ...(e.hints ? { hints: hintsObject(e.hints) } : {}),
            ...(e.hostname ? { hostname: e.hostname } : {}),
            ...(e.nodeName ? { nodeName: e.nodeName } : {}),
            ...(e.targetRef ? { targetRef: e.targetRef } : {}),
            ...(e.zone ? { zone: e.zone } : {}),
          })),
    ports:
      slice.ports.length === 0
        ? null
        : slice.ports.map((p) => ({
            ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
            name: p.name,
            ...(p.port !== undefined ? { port: p.port } : {}),
            protocol: p.protocol,
          })),
  };
}

/** An endpoint's `hints` as the API returns them: each list a list of `{name}`, left out when empty. */
function hintsObject(hints: EndpointHints): Record<string, unknown> {
  const named = (names: string[]) => names.map((name) => ({ name }));
  return {
    ...(hints.forNodes.length ? { forNodes: named(hints.forNodes) } : {}),
    ...(hints.forZones.length ? { forZones: named(hints.forZones) } : {}),
  };
}

/** A v1 Endpoints object as the API returns it, annotated when truncated. */
export function legacyObject({ endpoints, truncated }: { endpoints: LegacyEndpoints; truncated: number }): Record<string, unknown> {
  const address = (a: LegacyEndpointAddress) => ({
    ...(a.hostname ? { hostname: a.hostname } : {}),
    ip: a.ip,
    ...(a.nodeName ? { nodeName: a.nodeName } : {}),
  });
  return {
    apiVersion: 'v1',
    kind: 'Endpoints',
    metadata: {
      ...(truncated > 0 ? { annotations: { [OVER_CAPACITY_ANNOTATION]: 'truncated' } } : {}),
      name: endpoints.name,
      namespace: endpoints.namespace,
    },
    ...(endpoints.subsets.length > 0
      ? {
          subsets: endpoints.subsets.map((s) => ({
            ...(s.addresses.length ? { addresses: s.addresses.map(address) } : {}),
            ...(s.notReadyAddresses.length ? { notReadyAddresses: s.notReadyAddresses.map(address) } : {}),
            ...(s.ports.length
              ? {
                  ports: s.ports.map((p) => ({
                    ...(p.appProtocol ? { appProtocol: p.appProtocol } : {}),
                    name: p.name || undefined,
                    port: p.port,
                    protocol: p.protocol,
                  })),
                }
              : {}),
          })),
        }
      : {}),
  };
}

function list(items: Array<Record<string, unknown>>): Record<string, unknown> {
  return { apiVersion: 'v1', items, kind: 'List', metadata: { resourceVersion: '' } };
}

export type OutputFormat = 'table' | 'yaml' | 'json';

export function formatEndpoints(state: ClusterState, output: OutputFormat, legacy: boolean): string {
  const slices = derivedSlices(state);
  const legacyEndpoints = legacy ? derivedLegacyEndpoints(state) : [];
  if (output !== 'table') {
    const headless = new Set(state.services.filter((s) => s.clusterIPs[0] === 'None').map((s) => `${s.namespace}/${s.name}`));
    const items = [
      ...slices.map((s) => sliceObject(s, s.derived === true && headless.has(`${s.namespace}/${s.serviceName}`))),
      ...legacyEndpoints.map(legacyObject),
    ];
    return output === 'json'
      ? JSON.stringify(list(items), null, 4)
      : stringify(list(items), { sortMapEntries: true, lineWidth: 0, nullStr: 'null', indentSeq: false }).trimEnd();
  }
  if (slices.length === 0 && legacyEndpoints.length === 0) {
    return (state.pods ?? []).length === 0
      ? 'No EndpointSlices derived: the cluster state has no Pods.'
      : 'No EndpointSlices derived: every Service with a selector has EndpointSlices given.';
  }
  const rows = [['NAMESPACE', 'NAME', 'ADDRESSTYPE', 'PORTS', 'ENDPOINTS']];
  for (const s of slices) {
    rows.push([
      s.namespace,
      s.name,
      s.addressType,
      s.ports.length ? s.ports.map((p) => p.port ?? '<unset>').join(',') : '<unset>',
      abbreviate(s.endpoints.map((e) => e.addresses[0])),
    ]);
  }
  const lines = table(rows);
  if (legacyEndpoints.length > 0) {
    const legacyRows = [['NAMESPACE', 'NAME', 'ENDPOINTS']];
    for (const { endpoints, truncated } of legacyEndpoints) {
      const pairs = endpoints.subsets.flatMap((s) =>
        s.addresses.flatMap((a) => (s.ports.length ? s.ports.map((p) => `${a.ip}:${p.port}`) : [a.ip])),
      );
      legacyRows.push([
        endpoints.namespace,
        endpoints.name,
        `${abbreviate(pairs)}${truncated > 0 ? ` (truncated to ${MAX_LEGACY_ENDPOINT_ADDRESSES}, ${truncated} dropped)` : ''}`,
      ]);
    }
    lines.push('', ...table(legacyRows));
  }
  return lines.join('\n');
}

/** kubectl's ENDPOINTS column: the first three, then "+ N more...". */
function abbreviate(items: string[]): string {
  if (items.length === 0) return '<none>';
  return items.length > 3 ? `${items.slice(0, 3).join(',')} + ${items.length - 3} more...` : items.join(',');
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] + 3)))
      .join('')
      .trimEnd(),
  );
}
