/**
 * The cluster state from manifests: read (load.ts), checked and defaulted
 * (validate.ts), completed with the cluster IPs and NodePorts the API server
 * would allocate (allocate.ts), then joined into per-port backends (resolve.ts).
 */
import type { ClusterState } from '../model.js';
import { allocate } from './allocate.js';
import { readManifests } from './load.js';
import { validateManifests } from './validate.js';

export { resolveServices, type Resolution } from './resolve.js';

export interface LoadOptions {
  /** The API server's --service-cluster-ip-range (one CIDR per IP family); default ['10.96.0.0/12']. */
  serviceClusterIPRanges?: string[];
  /** The API server's --service-node-port-range, both ends included; default [30000, 32767]. */
  serviceNodePortRange?: [number, number];
  /** Seed of the pseudo-random choice of allocated cluster IPs and NodePorts; default 0. */
  seed?: number;
}

/** kube-apiserver's default --service-cluster-ip-range. */
const DEFAULT_SERVICE_CLUSTER_IP_RANGES = ['10.96.0.0/12'];
/** kube-apiserver's default --service-node-port-range. */
const DEFAULT_SERVICE_NODE_PORT_RANGE: [number, number] = [30000, 32767];

/** Reads manifest files and directories into a validated ClusterState; throws InputError on any mistake in them. */
export function loadClusterState(paths: string[], opts: LoadOptions = {}): ClusterState {
  const { manifests, notes } = readManifests(paths);
  const ranges = {
    serviceClusterIPRanges: opts.serviceClusterIPRanges ?? DEFAULT_SERVICE_CLUSTER_IP_RANGES,
    serviceNodePortRange: opts.serviceNodePortRange ?? DEFAULT_SERVICE_NODE_PORT_RANGE,
  };
  const state = allocate(validateManifests(manifests, ranges), { ...ranges, seed: opts.seed ?? 0 });
  return { ...state, notes: [...notes, ...state.notes] };
}
