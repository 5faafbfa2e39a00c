/**
 * `npm run build:ts && node dist/traces/synth/make-events-sample.js`: rewrites
 * traces/samples/rolling-update.events.jsonl, a rolling update of the sample
 * cluster's web Deployment (3 replicas, maxSurge 1, maxUnavailable 0) as the
 * EndpointSlice default/web-7xk2p of traces/samples/cluster.yaml goes through
 * it, recorded as
 *
 *   kubectl get endpointslices -n default -l kubernetes.io/service-name=web \
 *     --watch --output-watch-events -o json | ts %.s
 *
 * prints it: kubectl's initial list first (one synthetic ADDED), then every
 * change, each event indented by four spaces as kubectl's JSON printer does
 * (Go's json.MarshalIndent: the event's type before its object, the object's
 * keys sorted), every line after `ts`'s "seconds.microseconds " prefix.
 * kubectl leaves managedFields out unless --show-managed-fields is given, so
 * the objects have none.
 *
 * The story: the snapshot in cluster.yaml caught the end of an earlier rollout
 * (10.244.2.31 starting, 10.244.2.32 terminating). It finishes; then the
 * Deployment rolls to a new ReplicaSet one pod at a time: a new pod is added,
 * becomes ready, an old one starts terminating (serving, then not, while it
 * drains), and is removed when its grace period is over.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../../control/common/paths.js';

const OUT = join(PROJECT_ROOT, 'traces', 'samples', 'rolling-update.events.jsonl');
/** When the watch started, in microseconds since the epoch (2024-12-05T15:25:45Z). */
const START_MICROS = 1_733_412_345_000_000;
const SERVICE_UID = '5e1c2d7a-8f43-4b6e-9a0d-2c7b1e9f4a31';
const SLICE_UID = 'b3f0a9d2-6c1e-4e57-8d2a-7f14c9e03b68';

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

/** The slice as the snapshot has it. */
const endpoints: Endpoint[] = [
  { ...endpoint('10.244.0.12', 'node-a', 'web-6d4cf56db6-4xk8m', '0c6a1f52-3d7e-4a9b-8e21-5f0d3c8b7a14'), ready: true, serving: true },
  { ...endpoint('10.244.1.20', 'node-b', 'web-6d4cf56db6-9bq2w', '7d2e9b41-6a5c-4f83-b1d0-9e3a2c7f5b68'), ready: true, serving: true },
  endpoint('10.244.2.31', 'node-c', 'web-6d4cf56db6-tz7lp', 'a4f8c3e2-1b9d-4c6a-8f57-2e0b7d1a9c35'),
  { ...endpoint('10.244.2.32', 'node-c', 'web-5b8d7c9f4-hx2rd', 'e9b1d4a7-5c2f-4e8b-a3d6-0f7c2b9e1d84'), serving: true, terminating: true },
];

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

/** Seconds after the watch started, and what changed. */
const CHANGES: Array<[number, Change]> = [
  // The earlier rollout finishes.
  [1.204117, set('10.244.2.31', ready)],
  [1.311502, set('10.244.2.32', drained)],
  [3.027664, remove('10.244.2.32')],
  // The rollout to web-7f9c8b5d4: one new pod, then one old pod leaves, three times.
  [10.002391, add(endpoint('10.244.0.13', 'node-a', 'web-7f9c8b5d4-k2v9x', '3b7e1c9a-4d2f-4a68-9e05-c1d8f2a7b643'))],
  [12.508734, set('10.244.0.13', ready)],
  [12.61029, set('10.244.0.12', terminating)],
  [12.715448, add(endpoint('10.244.1.21', 'node-b', 'web-7f9c8b5d4-p8zqm', '6f2a8d1c-9b3e-4c57-a0e4-d7b5c1f9e826'))],
  [14.003816, set('10.244.0.12', drained)],
  [15.21977, set('10.244.1.21', ready)],
  [15.30152, set('10.244.1.20', terminating)],
  [15.40633, add(endpoint('10.244.2.33', 'node-c', 'web-7f9c8b5d4-w4njt', 'c8d3f6a1-2e7b-4b94-8c1f-5a9e0d3b7f21'))],
  [17.008259, set('10.244.1.20', drained)],
  [18.112843, set('10.244.2.33', ready)],
  [18.20571, set('10.244.2.31', terminating)],
  [20.011627, set('10.244.2.31', drained)],
  [42.61583, remove('10.244.0.12')],
  [45.30904, remove('10.244.1.20')],
  [48.21366, remove('10.244.2.31')],
];

/** The EndpointSlice as the API server returns it at a resourceVersion and generation. */
function slice(list: Endpoint[], resourceVersion: number, generation: number, changedAt: string): unknown {
  return sortedKeys({
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    addressType: 'IPv4',
    endpoints: list.map((e) => ({
      addresses: [e.ip],
      conditions: { ready: e.ready, serving: e.serving, terminating: e.terminating },
      nodeName: e.node,
      targetRef: { kind: 'Pod', name: e.pod, namespace: 'default', uid: e.podUid },
    })),
    metadata: {
      annotations: { 'endpoints.kubernetes.io/last-change-trigger-time': changedAt },
      creationTimestamp: '2024-11-28T09:14:02Z',
      generateName: 'web-',
      generation,
      labels: {
        app: 'web',
        'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io',
        'kubernetes.io/service-name': 'web',
      },
      name: 'web-7xk2p',
      namespace: 'default',
      ownerReferences: [{ apiVersion: 'v1', blockOwnerDeletion: true, controller: true, kind: 'Service', name: 'web', uid: SERVICE_UID }],
      resourceVersion: String(resourceVersion),
      uid: SLICE_UID,
    },
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
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
  let list = endpoints;
  let resourceVersion = 48_211;
  let generation = 23;
  const out = [printed('ADDED', slice(list, resourceVersion, generation, '2024-12-05T15:25:31Z'), START_MICROS + 183_452)];
  for (const [seconds, change] of CHANGES) {
    const micros = START_MICROS + Math.round(seconds * 1e6);
    list = change(list);
    resourceVersion += 37 + (generation % 5);
    generation++;
    out.push(printed('MODIFIED', slice(list, resourceVersion, generation, isoSeconds(micros - 40_000)), micros));
  }
  return out.join('');
}

writeFileSync(OUT, eventsText());
console.log(`${OUT}: ${CHANGES.length + 1} events`);
