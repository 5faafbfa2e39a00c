/**
 * The service cluster IP ranges a state is checked and allocated against. Since
 * Kubernetes 1.33 (KEP-1880) they are ServiceCIDR objects, of which every
 * cluster has at least the `kubernetes` one, made from the API server's
 * --service-cluster-ip-range; several are a union. Without either, svcpath
 * does not guess: the ranges are unknown.
 */
import ipaddr from 'ipaddr.js';
import type { IPFamily, ServiceCIDR, ServiceRanges } from './state.js';

/**
 * Where cluster IPs are allocated when the ranges are unknown: kube-apiserver's
 * default --service-cluster-ip-range and, as the API server has no IPv6 default,
 * the one kind and the kubeadm documentation use.
 */
export const DEFAULT_ALLOCATION_RANGES = ['10.96.0.0/12', 'fd00:10:96::/112'];

/** The ServiceCIDR the API server makes from its flag: its first CIDR's family is the cluster's primary one. */
const DEFAULT_SERVICE_CIDR = 'kubernetes';

const FLAG = '--service-cluster-ip-range';

/**
 * The union of the ServiceCIDRs and the flag (canonical CIDRs), the primary
 * family first; unknown when there are neither. The notes say so once, and
 * where the two sources disagree.
 */
export function serviceRanges(serviceCIDRs: readonly ServiceCIDR[], flag: readonly string[] | undefined, notes: string[]): ServiceRanges {
  const ordered = [...serviceCIDRs].sort((a, b) => Number(b.name === DEFAULT_SERVICE_CIDR) - Number(a.name === DEFAULT_SERVICE_CIDR));
  const fromObjects = ordered.flatMap((s) => s.cidrs);
  if (fromObjects.length === 0 && !flag) {
    notes.push(
      'service cluster IP ranges unknown: the state has no ServiceCIDR objects (kubectl get servicecidrs -o yaml, ' +
        `Kubernetes 1.33 and later) and ${FLAG} was not given; no cluster IP is checked against a range, UNALLOCATED_IP ` +
        `is not applied, and Services without a cluster IP get one from ${DEFAULT_ALLOCATION_RANGES.join(' or ')}`,
    );
    return { cidrs: [], source: '', allocatable: [...DEFAULT_ALLOCATION_RANGES] };
  }
  if (flag && serviceCIDRs.length > 0 && flag.some((cidr) => !fromObjects.includes(cidr))) {
    notes.push(
      `${FLAG} ${flag.join(',')} differs from the ServiceCIDR objects (${describeObjects(ordered)}): ` +
        'the service cluster IP ranges are their union (the API server makes the kubernetes ServiceCIDR from the flag ' +
        'only when it does not exist)',
    );
  }
  const sources = [...(flag ? [`${flag.join(', ')} from ${FLAG}`] : []), ...(ordered.length > 0 ? [describeObjects(ordered)] : [])];
  const primary = familyOf((flag ?? fromObjects)[0]);
  return {
    cidrs: primaryFirst(unique([...(flag ?? []), ...fromObjects]), primary),
    source: sources.join('; '),
    allocatable: primaryFirst(unique([...(flag ?? []), ...ordered.filter((s) => s.allocatable).flatMap((s) => s.cidrs)]), primary),
  };
}

/** The IP families of known ranges, the primary one first; undefined when the ranges are unknown. */
export function rangeFamilies(ranges: ServiceRanges): IPFamily[] | undefined {
  return ranges.cidrs.length === 0 ? undefined : unique(ranges.cidrs.map(familyOf));
}

function familyOf(cidr: string): IPFamily {
  return ipaddr.parseCIDR(cidr)[0].kind() === 'ipv4' ? 'IPv4' : 'IPv6';
}

/** "172.20.0.0/16 from ServiceCIDR kubernetes, 10.100.0.0/16 from ServiceCIDR extra" */
function describeObjects(serviceCIDRs: readonly ServiceCIDR[]): string {
  return serviceCIDRs.map((s) => `${s.cidrs.join(', ') || 'no CIDRs'} from ServiceCIDR ${s.name}`).join(', ');
}

function primaryFirst(cidrs: string[], primary: IPFamily): string[] {
  return [...cidrs.filter((c) => familyOf(c) === primary), ...cidrs.filter((c) => familyOf(c) !== primary)];
}

function unique<T>(values: T[]): T[] {
  return [...new Set(values)];
}
