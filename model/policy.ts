/**
 * The README's "Source classes" and "Traffic policies": which backends a new
 * flow may use and whether its source is masqueraded, from the frontend kind,
 * the service's policies and where the packet comes from.
 */
import { SVC_F } from '../control/compile/layout.js';
import { inNetwork, type Family } from './addresses.js';
import type { CompiledTables } from './tables.js';

export type SourceClass = 'pod' | 'node' | 'external';

export function sourceClass(tables: CompiledTables, family: Family, source: Uint8Array): SourceClass {
  if (tables.isNodeAddress(family, source)) return 'node';
  const pods = tables.settings.podNetwork[family];
  // Without a known pod network nothing is a pod: pods count as external.
  return pods && inNetwork(source, pods) ? 'pod' : 'external';
}

export interface PolicyDecision {
  backends: 'all' | 'local';
  masquerade: boolean;
}

/**
 * The README's table. A cluster IP masquerades whatever is not a pod, and
 * only when the pod network of the family is known ("kube-proxy then skips
 * the rules that need to know"): the README leaves open whether this node's
 * own traffic is masqueraded then; datapath/policy.ts and kube-proxy's
 * nftables rules (`ip saddr != <cluster CIDR>`, absent without one) say no.
 * Hairpin masquerading depends on the backend and is applied by the caller.
 */
export function trafficPolicy(tables: CompiledTables, family: Family, serviceFlags: number, source: SourceClass): PolicyDecision {
  const external = (serviceFlags & (SVC_F.NODEPORT | SVC_F.EXTERNAL_IP | SVC_F.LOADBALANCER)) !== 0;
  if (!external) {
    const podNetworkKnown = tables.settings.podNetwork[family] !== undefined;
    return {
      backends: serviceFlags & SVC_F.INT_LOCAL ? 'local' : 'all',
      masquerade: tables.settings.masqueradeAll || (podNetworkKnown && source !== 'pod'),
    };
  }
  if (!(serviceFlags & SVC_F.EXT_LOCAL)) return { backends: 'all', masquerade: true };
  switch (source) {
    case 'pod':
      return { backends: 'all', masquerade: false }; // short-circuit
    case 'node':
      return { backends: 'all', masquerade: true };
    case 'external':
      return { backends: 'local', masquerade: false };
  }
}
