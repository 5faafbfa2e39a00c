/**
 * The cluster state from manifests: read (load.ts), checked and defaulted
 * (validate.ts), then joined into per-port backends (resolve.ts).
 */
import type { ClusterState } from '../model.js';
import { readManifests } from './load.js';
import { validateManifests } from './validate.js';

export { resolveServices, type Resolution } from './resolve.js';

export interface LoadOptions {
  /** The API server's --service-cluster-ip-range (one CIDR per IP family); default ['10.96.0.0/12']. */
  serviceClusterIPRanges?: string[];
}

/** kube-apiserver's default --service-cluster-ip-range. */
const DEFAULT_SERVICE_CLUSTER_IP_RANGES = ['10.96.0.0/12'];

/** Reads manifest files and directories into a validated ClusterState; throws InputError on any mistake in them. */
export function loadClusterState(paths: string[], opts: LoadOptions = {}): ClusterState {
  const { manifests, notes } = readManifests(paths);
  const state = validateManifests(manifests, {
    serviceClusterIPRanges: opts.serviceClusterIPRanges ?? DEFAULT_SERVICE_CLUSTER_IP_RANGES,
  });
  return { ...state, notes: [...notes, ...state.notes] };
}
