/**
 * The Service environment variables ("service links") the kubelet gives every
 * container of a Pod created now, as pkg/kubelet/envvars and the kubelet's
 * getServiceEnvVarMap make them:
 *
 * - Services with a cluster IP only: headless (`None`) and ExternalName
 *   Services (no cluster IP) get none.
 * - The `kubernetes` Service of `default` always, even with service links
 *   disabled; every Service of the Pod's namespace when they are enabled
 *   (`enableServiceLinks`, default true). A Service of the Pod's own namespace
 *   named `kubernetes` takes the place of `default`'s.
 * - Per Service, in this order: `{NAME}_SERVICE_HOST` (the primary cluster IP,
 *   `spec.clusterIP`), `{NAME}_SERVICE_PORT` (the first port),
 *   `{NAME}_SERVICE_PORT_{PORTNAME}` for every named port, then the Docker
 *   links variables: `{NAME}_PORT` (the first port's `proto://ip:port`) and,
 *   per port, `{NAME}_PORT_{port}_{PROTO}` with its `_PROTO`, `_PORT` and
 *   `_ADDR`. Names are upper-cased with dashes turned to underscores; IPv6
 *   addresses are bracketed in `proto://[ip]:port`.
 *
 * The kubelet gathers the variables in a map whose iteration order Go
 * randomises, so neither the order of the Services nor which of two Services
 * wins a variable name they both make is defined there. Here Services come in
 * name order and a later one wins, and every such collision is reported.
 */
import type { ClusterState, Service } from '../cluster/state.js';

export interface EnvVar {
  name: string;
  value: string;
}

/** The variables of one Service, in the kubelet's order. */
export interface ServiceEnv {
  namespace: string;
  name: string;
  vars: EnvVar[];
}

export interface PodEnv {
  /** The Pod's namespace. */
  namespace: string;
  enableServiceLinks: boolean;
  /** The Services that make variables, in name order, each with its variables. */
  services: ServiceEnv[];
  /** The environment as the container sees it: one value per name (collisions resolved as described above). */
  vars: EnvVar[];
  /** Variable names two Services both make, and which value the container gets here. */
  notes: string[];
}

/** The Services whose variables the kubelet passes ("master services"): only `kubernetes` of `default`. */
const MASTER_SERVICE_NAMESPACE = 'default';
const MASTER_SERVICES = new Set(['kubernetes']);

export interface EnvOptions {
  /** The Pod's `spec.enableServiceLinks`; default true. */
  enableServiceLinks?: boolean;
}

/** The environment a Pod created now in `namespace` gets from the kubelet. */
export function podEnv(state: ClusterState, namespace: string, opts: EnvOptions = {}): PodEnv {
  const enableServiceLinks = opts.enableServiceLinks ?? true;
  const byName = new Map<string, Service>();
  for (const service of state.services) {
    if (!hasClusterIP(service)) continue;
    if (service.namespace === MASTER_SERVICE_NAMESPACE && MASTER_SERVICES.has(service.name)) {
      // The Pod's namespace's own Service of the same name wins, whatever the listing order.
      if (!byName.has(service.name)) byName.set(service.name, service);
    } else if (service.namespace === namespace && enableServiceLinks) {
      byName.set(service.name, service);
    }
  }
  const services = [...byName.values()]
    .sort((a, b) => compare(a.name, b.name))
    .map((service) => ({ namespace: service.namespace, name: service.name, vars: serviceEnvVars(service) }));

  const values = new Map<string, { value: string; from: string }>();
  const notes: string[] = [];
  for (const { namespace: ns, name, vars } of services) {
    for (const v of vars) {
      const earlier = values.get(v.name);
      if (earlier && earlier.value !== v.value) {
        notes.push(
          `${v.name} is made by Service ${earlier.from} (${earlier.value}) and by Service ${ns}/${name} ` +
            `(${v.value}); the kubelet's choice between them is random, here ${ns}/${name}'s wins`,
        );
      }
      values.set(v.name, { value: v.value, from: `${ns}/${name}` });
    }
  }
  return {
    namespace,
    enableServiceLinks,
    services,
    vars: [...values].map(([name, { value }]) => ({ name, value })),
    notes,
  };
}

/** pkg/kubelet/envvars FromServices for one Service that has a cluster IP. */
export function serviceEnvVars(service: Service): EnvVar[] {
  if (!hasClusterIP(service) || service.ports.length === 0) return [];
  const prefix = envVariableName(service.name);
  const ip = service.clusterIPs[0];
  const vars: EnvVar[] = [
    { name: `${prefix}_SERVICE_HOST`, value: ip },
    { name: `${prefix}_SERVICE_PORT`, value: String(service.ports[0].port) },
  ];
  for (const port of service.ports) {
    if (port.name !== '') vars.push({ name: `${prefix}_SERVICE_PORT_${envVariableName(port.name)}`, value: String(port.port) });
  }
  // The Docker links variables; Docker names the first port's URL {NAME}_PORT.
  service.ports.forEach((port, i) => {
    const proto = port.protocol.toLowerCase();
    const url = `${proto}://${joinHostPort(ip, port.port)}`;
    if (i === 0) vars.push({ name: `${prefix}_PORT`, value: url });
    const portPrefix = `${prefix}_PORT_${port.port}_${port.protocol.toUpperCase()}`;
    vars.push(
      { name: portPrefix, value: url },
      { name: `${portPrefix}_PROTO`, value: proto },
      { name: `${portPrefix}_PORT`, value: String(port.port) },
      { name: `${portPrefix}_ADDR`, value: ip },
    );
  });
  return vars;
}

/** The kubelet's makeEnvVariableName: upper case, dashes to underscores. */
export function envVariableName(name: string): string {
  return name.replaceAll('-', '_').toUpperCase();
}

/** The env file form: NAME=value per line, without a final newline. */
export function formatEnv(env: PodEnv): string {
  return env.vars.map((v) => `${v.name}=${v.value}`).join('\n');
}

/** v1helper.IsServiceIPSet: a cluster IP that is neither empty nor "None". */
function hasClusterIP(service: Service): boolean {
  const ip = service.clusterIPs[0];
  return ip !== undefined && ip !== '' && ip !== 'None';
}

/** Go's net.JoinHostPort: IPv6 addresses in brackets. */
function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
