/**
 * `npm run build:ts && node dist/traces/synth/make-events-sample.js`: rewrites
 * traces/samples/rolling-update.events.jsonl, two rollouts in the sample
 * cluster as its EndpointSlices default/web-7xk2p and kube-system/kube-dns-b8k4q
 * (traces/samples/cluster.yaml) go through them, recorded as
 *
 *   kubectl get endpointslices -A -l 'kubernetes.io/service-name in (web,kube-dns)' \
 *     --watch --output-watch-events -o json | ts %.s
 *
 * prints it: kubectl's initial list first (a synthetic ADDED per slice, by
 * namespace and name), then every change, each event indented by four spaces
 * as kubectl's JSON printer does (Go's json.MarshalIndent: the event's type
 * before its object, the object's keys sorted), every line after `ts`'s
 * "seconds.microseconds " prefix. kubectl leaves managedFields out unless
 * --show-managed-fields is given, so the objects have none. resourceVersion is
 * the API server's one counter, shared by both slices; generation is each
 * slice's own.
 *
 * The story: the snapshot in cluster.yaml caught the end of an earlier rollout
 * of web (10.244.2.31 starting, 10.244.2.32 terminating). It finishes. Then
 * CoreDNS (2 replicas; kubeadm's maxUnavailable 1, maxSurge 1) rolls to a new
 * ReplicaSet: a new pod is added and one old pod is sent SIGTERM at once; when
 * that new pod is ready, the second new pod is added and the other old pod
 * sent SIGTERM. An old CoreDNS pod keeps serving while it terminates (its
 * lameduck), stops serving 5 s after its SIGTERM (drained) and is removed 30 s
 * after it. While they drain, web's Deployment (3 replicas, maxSurge 1,
 * maxUnavailable 0) rolls one pod at a time: a new pod is added, becomes
 * ready, an old one starts terminating (serving, then not, while it drains),
 * and is removed when its grace period is over.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../control/common/paths.js';

const OUT = join(PROJECT_ROOT, 'traces', 'samples', 'rolling-update.events.jsonl');
/** When the watch started, in microseconds since the epoch (2024-12-05T15:25:45Z). */
const START_MICROS = 1_733_412_345_000_000;

interface Endpoint {
  ip: string;
  node: string;
  pod: string;
  podUid: string;
  ready: boolean;
  serving: boolean;
  terminating: boolean;
}

const endpoint = (ip: string, node: string, pod: string, podUid: string): Endpoint => ({
  ip,
  node,
  pod,
  podUid,
  ready: false,
  serving: false,
  terminating: false,
});

/** An EndpointSlice as the snapshot has it: what every event of it repeats, and its endpoints. */
interface Slice {
  namespace: string;
  name: string;
  service: string;
  serviceUid: string;
  uid: string;
  labels: Record<string, string>;
  ports: Array<{ name: string; port: number; protocol: string }>;
  creationTimestamp: string;
  /** When the slice last changed before the watch started (its initial list's annotation). */
  changedAt: string;
  resourceVersion: number;
  generation: number;
  endpoints: Endpoint[];
}

const MANAGED_BY = { 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' };

const web: Slice = {
  namespace: 'default',
  name: 'web-7xk2p',
  service: 'web',
  serviceUid: '5e1c2d7a-8f43-4b6e-9a0d-2c7b1e9f4a31',
  uid: 'b3f0a9d2-6c1e-4e57-8d2a-7f14c9e03b68',
  labels: { app: 'web', ...MANAGED_BY, 'kubernetes.io/service-name': 'web' },
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  creationTimestamp: '2024-11-28T09:14:02Z',
  changedAt: '2024-12-05T15:25:31Z',
  resourceVersion: 48_211,
  generation: 23,
  endpoints: [
    { ...endpoint('10.244.0.12', 'node-a', 'web-6d4cf56db6-4xk8m', '0c6a1f52-3d7e-4a9b-8e21-5f0d3c8b7a14'), ready: true, serving: true },
    { ...endpoint('10.244.1.20', 'node-b', 'web-6d4cf56db6-9bq2w', '7d2e9b41-6a5c-4f83-b1d0-9e3a2c7f5b68'), ready: true, serving: true },
    endpoint('10.244.2.31', 'node-c', 'web-6d4cf56db6-tz7lp', 'a4f8c3e2-1b9d-4c6a-8f57-2e0b7d1a9c35'),
    {
      ...endpoint('10.244.2.32', 'node-c', 'web-5b8d7c9f4-hx2rd', 'e9b1d4a7-5c2f-4e8b-a3d6-0f7c2b9e1d84'),
      serving: true,
      terminating: true,
    },
  ],
};

/** The EndpointSlice controller copies the Service's labels (kubeadm's, for kube-dns) onto its slices. */
const kubeDns: Slice = {
  namespace: 'kube-system',
  name: 'kube-dns-b8k4q',
  service: 'kube-dns',
  serviceUid: '0f8e3b6c-2a71-4d95-b4c8-6e1a9d3f7b20',
  uid: '9a4d7e2f-5b18-4c63-8e0a-3f6b1c9d2e75',
  labels: {
    ...MANAGED_BY,
    'k8s-app': 'kube-dns',
    'kubernetes.io/cluster-service': 'true',
    'kubernetes.io/name': 'CoreDNS',
    'kubernetes.io/service-name': 'kube-dns',
  },
  ports: [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ],
  creationTimestamp: '2024-11-28T09:13:37Z',
  changedAt: '2024-11-28T09:14:26Z',
  resourceVersion: 1_342,
  generation: 5,
  endpoints: [
    { ...endpoint('10.244.0.2', 'node-a', 'coredns-76f75df574-9wzkq', 'd1c7a3e9-8f25-4b06-9d4e-7a2c5f1b8e63'), ready: true, serving: true },
    { ...endpoint('10.244.1.2', 'node-b', 'coredns-76f75df574-hf6ps', '4e9b2d7c-1a6f-4c38-b5e2-8d0f3a7c9b14'), ready: true, serving: true },
  ],
};

type Change = (list: Endpoint[]) => Endpoint[];
const set =
  (ip: string, conditions: Partial<Endpoint>): Change =>
  (list) =>
    list.map((e) => (e.ip === ip ? { ...e, ...conditions } : e));
const add =
  (e: Endpoint): Change =>
  (list) => [...list, e];
const remove =
  (ip: string): Change =>
  (list) =>
    list.filter((e) => e.ip !== ip);
const ready = { ready: true, serving: true };
const terminating = { ready: false, serving: true, terminating: true };
const drained = { ready: false, serving: false, terminating: true };

/** Seconds after the watch started, the slice, and what changed; in time order. */
const CHANGES: Array<[number, Slice, Change]> = [
  // The earlier rollout of web finishes.
  [1.204117, web, set('10.244.2.31', ready)],
  [1.311502, web, set('10.244.2.32', drained)],
  [3.027664, web, remove('10.244.2.32')],
  // CoreDNS rolls to coredns-7db6d8ff4d: a new pod and the first old one's SIGTERM, then, once that pod is ready, the second.
  [3.904518, kubeDns, add(endpoint('10.244.0.3', 'node-a', 'coredns-7db6d8ff4d-m5xrj', '2b8f4c1e-7d39-4a56-9e0c-5f3a8d2b6c71'))],
  [3.952871, kubeDns, set('10.244.1.2', terminating)],
  [5.408362, kubeDns, set('10.244.0.3', ready)],
  [5.479105, kubeDns, add(endpoint('10.244.1.3', 'node-b', 'coredns-7db6d8ff4d-t8cwv', 'e5a1d9b3-6c24-4f87-a0d8-1b7e4c2f9a36'))],
  [5.52394, kubeDns, set('10.244.0.2', terminating)],
  [6.917553, kubeDns, set('10.244.1.3', ready)],
  [8.961207, kubeDns, set('10.244.1.2', drained)],
  // The rollout of web to web-7f9c8b5d4: one new pod, then one old pod leaves, three times.
  [10.002391, web, add(endpoint('10.244.0.13', 'node-a', 'web-7f9c8b5d4-k2v9x', '3b7e1c9a-4d2f-4a68-9e05-c1d8f2a7b643'))],
  [10.537716, kubeDns, set('10.244.0.2', drained)],
  [12.508734, web, set('10.244.0.13', ready)],
  [12.61029, web, set('10.244.0.12', terminating)],
  [12.715448, web, add(endpoint('10.244.1.21', 'node-b', 'web-7f9c8b5d4-p8zqm', '6f2a8d1c-9b3e-4c57-a0e4-d7b5c1f9e826'))],
  [14.003816, web, set('10.244.0.12', drained)],
  [15.21977, web, set('10.244.1.21', ready)],
  [15.30152, web, set('10.244.1.20', terminating)],
  [15.40633, web, add(endpoint('10.244.2.33', 'node-c', 'web-7f9c8b5d4-w4njt', 'c8d3f6a1-2e7b-4b94-8c1f-5a9e0d3b7f21'))],
  [17.008259, web, set('10.244.1.20', drained)],
  [18.112843, web, set('10.244.2.33', ready)],
  [18.20571, web, set('10.244.2.31', terminating)],
  [20.011627, web, set('10.244.2.31', drained)],
  [33.95839, kubeDns, remove('10.244.1.2')],
  [35.529817, kubeDns, remove('10.244.0.2')],
  [42.61583, web, remove('10.244.0.12')],
  [45.30904, web, remove('10.244.1.20')],
  [48.21366, web, remove('10.244.2.31')],
];

/** The EndpointSlice as the API server returns it. */
function sliceObject(s: Slice, changedAt: string): unknown {
  return sortedKeys({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType: 'IPv4',
    endpoints: s.endpoints.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
      nodeName: e.node,
      targetRef: { kind: 'Pod', name: e.pod, namespace: s.namespace, uid: e.podUid },
    })),
    metadata: {
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': changedAt },
      creationTimestamp: s.creationTimestamp,
      generateName: `${s.service}-`,
      generation: s.generation,
      labels: s.labels,
      name: s.name,
      namespace: s.namespace,
      ownerReferences: [
        { apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: s.service, uid: s.serviceUid },
      ],
      resourceVersion: String(s.resourceVersion),
      uid: s.uid,
    },
    ports: s.ports,
  });
}

/** Go's encoding/json writes the keys of a map (an unstructured object is one) in sorted order. */
function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => [k, sortedKeys(v)]),
  );
}

/** "seconds.microseconds ", what `ts %.s` writes in front of a line. */
function tsPrefix(micros: number): string {
  return `${Math.floor(micros / 1e6)}.${String(micros % 1e6).padStart(6, '0')} `;
}

function isoSeconds(micros: number): string {
  return new Date(Math.floor(micros / 1e6) * 1000).toISOString().replace('.000Z', 'Z');
}

/** One event as kubectl prints it, each line prefixed; `ts` reads a line a little after kubectl wrote it. */
function printed(type: string, object: unknown, micros: number): string {
  const lines = JSON.stringify({ type, object }, null, 4).split('\n');
  return lines.map((line, i) => `${tsPrefix(micros + (i === 0 ? 0 : 7 + Math.floor(i / 40)))}${line}\n`).join('');
}

function eventsText(): string {
  const slices = [web, kubeDns];
  // kubectl's initial list, in the order the API server lists them: by namespace, then name.
  const out = slices.map((s, i) => printed('ADDED', sliceObject(s, s.changedAt), START_MICROS + 183_452 + i * 61));
  let resourceVersion = Math.max(...slices.map((s) => s.resourceVersion));
  for (const [seconds, s, change] of CHANGES) {
    const micros = START_MICROS + Math.round(seconds * 1e6);
    s.endpoints = change(s.endpoints);
    resourceVersion += 37 + (resourceVersion % 5);
    s.resourceVersion = resourceVersion;
    s.generation++;
    out.push(printed('MODIFIED', sliceObject(s, isoSeconds(micros - 40_000)), micros));
  }
  return out.join('');
}

writeFileSync(OUT, eventsText());
console.log(`${OUT}: ${CHANGES.length + 2} events`);
