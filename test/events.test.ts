import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { applyEvent, loadClusterState, parseEvents, readEvents, type ClusterEvent } from '../control/cluster/index.js';
import type { ClusterState } from '../control/cluster/state.js';

const samples = fileURLToPath(new URL('../traces/samples/', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'svcpath-events-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

let written = 0;
function loadManifests(objects: object[]): ClusterState {
  const file = join(scratch, `m-${++written}.yaml`);
  writeFileSync(file, objects.map((o) => stringify(o)).join('---\n'));
  return loadClusterState([file]);
}

const applyAll = (state: ClusterState, events: ClusterEvent[]) => events.reduce((s, e) => applyEvent(s, e), state);

const EMPTY: ClusterState = { services: [], endpointSlices: [], nodes: [], notes: [] };

const service = (name: string, clusterIP: string, extra: object = {}) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: 'default' },
  spec: { clusterIP, clusterIPs: [clusterIP], ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: 8080 }], ...extra },
});
const slice = (name: string, serviceName: string, ips: string[], conditions: object = { ready: true }) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: { name, namespace: 'default', labels: { 'kubernetes.io/service-name': serviceName } },
  addressType: 'IPv4',
  endpoints: ips.map((ip) => ({ addresses: [ip], conditions, nodeName: 'node-a' })),
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});
const node = (name: string, ip: string) => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name },
  status: { addresses: [{ type: 'InternalIP', address: ip }] },
});
const pod = (name: string, ip: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: 'default', labels: { app } },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] },
  status: { phase: 'Running', podIP: ip, podIPs: [{ ip }], conditions: [{ type: 'Ready', status: 'True' }] },
});

const WEB = service('web', '10.96.0.10');
const WEB_SLICE = slice('web-abc', 'web', ['10.244.0.12']);
const INITIAL = [WEB, WEB_SLICE, node('node-a', '192.168.10.11')];

/** One compact line per event, each with a "time" field. */
function compact(events: Array<{ time: unknown; type: string; object: unknown }>): string {
  return events.map((e) => `${JSON.stringify(e)}\n`).join('');
}

/** An event as kubectl -o json prints it (indented by four), every line behind a `ts %.s` prefix. */
function tsPrinted(prefixes: string[], type: string, object: unknown): string {
  const lines = JSON.stringify({ type, object }, null, 4).split('\n');
  return lines.map((line, i) => `${prefixes[Math.min(i, prefixes.length - 1)]} ${line}\n`).join('');
}

function read(text: string, initial = INITIAL) {
  return parseEvents(text, 'events.jsonl', loadManifests(initial));
}

/** The state's objects without where they were read, each list in key order, to compare states made two ways. */
function comparable(state: ClusterState) {
  const strip = <T extends { origin: unknown; namespace?: string; name: string }>(list: T[] = []) =>
    list.map((o) => ({ ...o, origin: undefined })).sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
  return {
    services: strip(state.services),
    endpointSlices: strip(state.endpointSlices),
    legacyEndpoints: strip(state.legacyEndpoints),
    nodes: strip(state.nodes),
    pods: strip(state.pods),
    proxyConfig: state.proxyConfig && { ...state.proxyConfig, origin: undefined },
  };
}

describe('reading watch events', () => {
  it('reads compact lines with an RFC 3339 time and with epoch seconds, to the nanosecond', () => {
    const moved = slice('web-abc', 'web', ['10.244.0.13']);
    const r = read(
      compact([
        { time: '2024-12-05T15:25:45.123456789Z', type: 'MODIFIED', object: moved },
        { time: '2024-12-05T16:25:46.5+01:00', type: 'MODIFIED', object: WEB_SLICE },
      ]) +
        '{"type":"DELETED","time":1733412347.000000001,"object":' +
        `${JSON.stringify(WEB_SLICE)}}\n`,
    );
    expect(r.error).toBeUndefined();
    const seconds = (iso: string) => BigInt(Date.parse(iso) / 1000) * 1_000_000_000n;
    expect(r.events.map((e) => [e.time, e.line, e.type, e.kind, e.namespace, e.name])).toEqual([
      [seconds('2024-12-05T15:25:45Z') + 123_456_789n, 1, 'MODIFIED', 'EndpointSlice', 'default', 'web-abc'],
      [seconds('2024-12-05T15:25:46Z') + 500_000_000n, 2, 'MODIFIED', 'EndpointSlice', 'default', 'web-abc'],
      // 1733412347.000000001 as a double is 1733412347: the text is read, not the number.
      [1_733_412_347_000_000_001n, 3, 'DELETED', 'EndpointSlice', 'default', 'web-abc'],
    ]);
    const first = r.events[0];
    expect(first.kind === 'EndpointSlice' && first.object.endpoints.map((e) => e.addresses)).toEqual([['10.244.0.13']]);
  });

  it('reads pretty-printed events behind ts %.s prefixes: the first line gives the time, the others are stripped', () => {
    const moved = slice('web-abc', 'web', ['10.244.0.13']);
    const text =
      tsPrinted(['1733412345.123456', '1733412345.123470'], 'MODIFIED', moved) +
      tsPrinted(['1733412346.000001', '1733412399.999999'], 'DELETED', moved);
    const r = read(text);
    expect(r.error).toBeUndefined();
    const firstLength = JSON.stringify({ type: 'MODIFIED', object: moved }, null, 4).split('\n').length;
    expect(r.events.map((e) => [e.time, e.line, e.type])).toEqual([
      [1_733_412_345_123_456_000n, 1, 'MODIFIED'],
      [1_733_412_346_000_001_000n, firstLength + 1, 'DELETED'],
    ]);
  });

  it('reads pretty-printed events without prefixes, by their time field, and CRLF line ends', () => {
    const text = [
      { time: 10, type: 'ADDED', object: service('api', '10.96.0.20') },
      { time: 10.5, type: 'MODIFIED', object: service('api', '10.96.0.20', { sessionAffinity: 'ClientIP' }) },
    ]
      .map((e) => JSON.stringify(e, null, 2).replaceAll('\n', '\r\n'))
      .join('\r\n');
    const r = read(text);
    expect(r.error).toBeUndefined();
    const secondLine = text.split('\r\n').indexOf('{', 1) + 1;
    expect(secondLine).toBeGreaterThan(1);
    expect(r.events.map((e) => [e.time, e.line, e.type, e.kind, e.name])).toEqual([
      [10_000_000_000n, 1, 'ADDED', 'Service', 'api'],
      [10_500_000_000n, secondLine, 'MODIFIED', 'Service', 'api'],
    ]);
    const last = r.events[1];
    expect(last.kind === 'Service' && last.object.sessionAffinity).toBe('ClientIP');
  });

  it('skips kubectl initial list (ADDED of objects of the initial state) and counts it', () => {
    const r = read(
      compact([
        { time: 1, type: 'ADDED', object: WEB },
        { time: 1, type: 'ADDED', object: WEB_SLICE },
      ]),
    );
    expect(r.error).toBeUndefined();
    expect(r.events).toEqual([]);
    expect(r.initialListSkipped).toBe(2);
  });

  it('takes a repeated ADDED (a re-list) as a no-op when unchanged and as a MODIFIED when changed', () => {
    const api = service('api', '10.96.0.20');
    const changed = service('api', '10.96.0.20', { sessionAffinity: 'ClientIP' });
    const r = read(
      compact([
        { time: 1, type: 'ADDED', object: api },
        { time: 2, type: 'ADDED', object: api },
        { time: 3, type: 'ADDED', object: changed },
      ]),
    );
    expect(r.error).toBeUndefined();
    expect(r.events.map((e) => [e.line, e.type])).toEqual([
      [1, 'ADDED'],
      [3, 'MODIFIED'],
    ]);
    expect(r.repeatsSkipped).toBe(1);
    expect(r.notes).toEqual([
      'events.jsonl: line 3: Service default/api: ADDED again, changed: taken as MODIFIED (a re-list after the watch restarted)',
    ]);
  });

  it('applies an ADDED after a DELETED of an initial object, and counts the initial list only before the first change', () => {
    const r = read(
      compact([
        { time: 1, type: 'DELETED', object: WEB_SLICE },
        { time: 2, type: 'ADDED', object: WEB_SLICE },
      ]),
    );
    expect(r.error).toBeUndefined();
    expect(r.events.map((e) => e.type)).toEqual(['DELETED', 'ADDED']);
    expect(r.initialListSkipped).toBe(0);
  });

  describe('mistakes: one line, with the events before them kept', () => {
    const good = { time: 1, type: 'MODIFIED', object: WEB_SLICE };
    const cases: Array<[string, string, string | RegExp]> = [
      [
        'a line without a time',
        '{"type":"MODIFIED","object":{}}',
        'events.jsonl: line 2: no time: neither an epoch time in front of the line, as `ts %.s` writes it (e.g. "1733412345.123456 "), nor a "time" field',
      ],
      [
        'a time going backwards',
        JSON.stringify({ ...good, time: 0.5 }),
        'events.jsonl: line 2: time 0.500000000 is before the time of the event on line 1 (1.000000000); events must be in time order',
      ],
      [
        'an unknown type',
        JSON.stringify({ ...good, time: 2, type: 'BOOKMARK' }),
        'events.jsonl: line 2: type: must be ADDED, MODIFIED or DELETED, got "BOOKMARK"',
      ],
      [
        'a time that is neither form',
        JSON.stringify({ ...good, time: '05/12/2024' }),
        'events.jsonl: line 2: time: must be an RFC 3339 time (e.g. "2024-12-05T15:25:45.123456Z") or epoch seconds (e.g. 1733412345.123456), got "05/12/2024"',
      ],
      [
        'a negative epoch time',
        '{"time": -1, "type": "MODIFIED", "object": {}}',
        'events.jsonl: line 2: time: must be an RFC 3339 time (e.g. "2024-12-05T15:25:45.123456Z") or epoch seconds (e.g. 1733412345.123456), got -1',
      ],
      [
        'an object failing validation',
        JSON.stringify({ ...good, time: 2, object: slice('web-abc', 'web', ['10.244.0.300']) }),
        'events.jsonl: line 2: EndpointSlice default/web-abc: endpoints[0].addresses[0]: "10.244.0.300" is not a valid IP address',
      ],
      [
        'a MODIFIED of an unknown object',
        JSON.stringify({ ...good, time: 2, object: service('api', '10.96.0.20') }),
        'events.jsonl: line 2: Service default/api: MODIFIED, but there is no such object at this time: not in the initial state and not ADDED before',
      ],
      ['a value that is not an object', '1 2 3', 'events.jsonl: line 2: expected a watch event (a JSON object), got "2 3"'],
      // The rest is JSON.parse's own words, which change with Node's version.
      ['broken JSON', '{"time": 2, "type": }', /^events\.jsonl: line 2: not JSON: \S/],
      [
        'an event cut off at the end',
        '{"time": 2, "type": "MODIFIED",\n  "object": {',
        'events.jsonl: line 2: the event starting here is cut off at the end of the file',
      ],
    ];
    it.each(cases)('%s', (_, line, message) => {
      const r = read(`${JSON.stringify(good)}\n${line}\n${JSON.stringify({ ...good, time: 9 })}\n`);
      if (typeof message === 'string') expect(r.error?.message).toBe(message);
      else expect(r.error?.message).toMatch(message);
      expect(r.events.map((e) => e.line)).toEqual([1]);
    });

    it('a DELETED of an object deleted before names the line of that DELETED', () => {
      const r = read(
        compact([
          { ...good, type: 'DELETED' },
          { ...good, time: 2, type: 'DELETED' },
        ]),
      );
      expect(r.error?.message).toBe(
        'events.jsonl: line 2: EndpointSlice default/web-abc: DELETED, but there is no such object at this time: DELETED on line 1',
      );
      expect(r.events).toHaveLength(1);
    });

    it('a file that cannot be read is thrown', () => {
      expect(() => readEvents(join(scratch, 'missing.jsonl'), EMPTY)).toThrow(
        `${join(scratch, 'missing.jsonl')}: no such file or directory`,
      );
    });
  });
});

describe('applying events', () => {
  const manifests = [
    node('node-a', '192.168.10.11'),
    service('web', '10.96.0.10'),
    slice('web-abc', 'web', ['10.244.0.12', '10.244.0.13']),
    // A Service whose slices come from its Pods, as loading derives them.
    service('app', '10.96.0.30', { selector: { app: 'app' } }),
    pod('app-1', '10.244.0.40', 'app'),
    pod('app-2', '10.244.0.41', 'app'),
    {
      apiVersion: 'v1',
      kind: 'Endpoints',
      metadata: { name: 'legacy', namespace: 'default' },
      subsets: [{ addresses: [{ ip: '10.244.0.50' }], ports: [{ name: 'http', port: 8080, protocol: 'TCP' }] }],
    },
    service('legacy', '10.96.0.31'),
    { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration', clusterCIDR: '10.244.0.0/16' },
  ];

  it('ADDED events of every object on an empty state give the state loading them as manifests gives', () => {
    const text = compact(manifests.map((object, i) => ({ time: i, type: 'ADDED', object })));
    const r = parseEvents(text, 'events.jsonl', EMPTY);
    expect(r.error).toBeUndefined();
    const applied = applyAll(EMPTY, r.events);
    const loaded = loadManifests(manifests);
    expect(loaded.endpointSlices.filter((s) => s.derived)).toHaveLength(1);
    expect(comparable(applied)).toEqual(comparable(loaded));
  });

  it('a Pod event makes the derived slices again', () => {
    const r = parseEvents(
      compact([{ time: 1, type: 'DELETED', object: pod('app-1', '10.244.0.40', 'app') }]),
      'e',
      loadManifests(manifests),
    );
    expect(r.error).toBeUndefined();
    const after = applyEvent(loadManifests(manifests), r.events[0]);
    const derived = after.endpointSlices.filter((s) => s.derived);
    expect(derived.flatMap((s) => s.endpoints.map((e) => e.addresses[0]))).toEqual(['10.244.0.41']);
  });

  it('random ADDED, MODIFIED and DELETED sequences end in the state the survivors last versions load to', () => {
    const versions = (name: string, ip: string) => [
      slice(name, 'web', [ip]),
      slice(name, 'web', [ip], { ready: false, serving: true, terminating: true }),
      slice(name, 'web', [ip, '10.244.9.9']),
    ];
    const objects: Record<string, object[]> = {
      'web-a': versions('web-a', '10.244.1.1'),
      'web-b': versions('web-b', '10.244.1.2'),
      svc: [service('db', '10.96.0.40'), service('db', '10.96.0.40', { sessionAffinity: 'ClientIP' })],
      node: [node('node-b', '192.168.10.12'), node('node-b', '192.168.10.99')],
    };
    const names = Object.keys(objects);
    const step = fc.tuple(fc.constantFrom(...names), fc.nat(2));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
        // The sequence as a watch could send it: ADDED when absent, else MODIFIED or (for version 2 of 3) DELETED.
        const current = new Map<string, object>();
        const events: Array<{ time: number; type: string; object: object }> = [];
        steps.forEach(([name, v], i) => {
          const object = objects[name][v % objects[name].length];
          const type = !current.has(name) ? 'ADDED' : v === 2 ? 'DELETED' : 'MODIFIED';
          if (type === 'DELETED') current.delete(name);
          else current.set(name, object);
          events.push({ time: i, type, object: type === 'DELETED' ? objects[name][0] : object });
        });
        const r = parseEvents(compact(events), 'events.jsonl', loadManifests(INITIAL));
        expect(r.error).toBeUndefined();
        const applied = applyAll(loadManifests(INITIAL), r.events);
        expect(comparable(applied)).toEqual(comparable(loadManifests([...INITIAL, ...current.values()])));
      }),
      { numRuns: 60 },
    );
  });
});

describe('the bundled rolling update', () => {
  const initial = loadClusterState([join(samples, 'cluster.yaml')]);
  const r = readEvents(join(samples, 'rolling-update.events.jsonl'), initial);

  it('reads as is: kubectl initial list of both slices skipped, then 18 changes of web and 10 of kube-dns, in time order', () => {
    expect(r.error).toBeUndefined();
    expect(r.warnings).toEqual([]);
    expect(r.initialListSkipped).toBe(2);
    expect(r.events).toHaveLength(28);
    const count = (name: string) => r.events.filter((e) => `${e.type} ${e.kind} ${e.namespace}/${e.name}` === name).length;
    expect(count('MODIFIED EndpointSlice default/web-7xk2p')).toBe(18);
    expect(count('MODIFIED EndpointSlice kube-system/kube-dns-b8k4q')).toBe(10);
    expect(r.events[0].time).toBe(1_733_412_346_204_117_000n);
    r.events.forEach((e, i) => i > 0 && expect(e.time > r.events[i - 1].time, `event ${i}`).toBe(true));
  });

  it('rolls CoreDNS before web starts: both new pods ready, the old ones serving while terminating, then drained, then gone', () => {
    // The slice at `seconds` after the watch started (whole milliseconds).
    const dnsAt = (seconds: number) =>
      applyAll(
        initial,
        r.events.filter((e) => e.time <= 1_733_412_345_000_000_000n + BigInt(seconds * 1000) * 1_000_000n),
      )
        .endpointSlices.find((s) => s.name === 'kube-dns-b8k4q')
        ?.endpoints.map((e) => [e.addresses[0], e.nodeName, e.conditions.ready, e.conditions.serving, e.conditions.terminating]);
    // Before web's first new pod (10 s): the new pods ready, the old ones terminating, one still serving.
    expect(dnsAt(9.9)).toEqual([
      ['10.244.0.2', 'node-a', false, true, true],
      ['10.244.1.2', 'node-b', false, false, true],
      ['10.244.0.3', 'node-a', true, true, false],
      ['10.244.1.3', 'node-b', true, true, false],
    ]);
    expect(dnsAt(30)?.slice(0, 2)).toEqual([
      ['10.244.0.2', 'node-a', false, false, true],
      ['10.244.1.2', 'node-b', false, false, true],
    ]);
    expect(dnsAt(60)).toEqual([
      ['10.244.0.3', 'node-a', true, true, false],
      ['10.244.1.3', 'node-b', true, true, false],
    ]);
  });

  it('ends with the three new pods ready and the old ones gone', () => {
    const final = applyAll(initial, r.events);
    const web = final.endpointSlices.find((s) => s.name === 'web-7xk2p');
    expect(web?.endpoints.map((e) => [e.addresses[0], e.nodeName, e.conditions])).toEqual([
      ['10.244.0.13', 'node-a', { ready: true, serving: true, terminating: false }],
      ['10.244.1.21', 'node-b', { ready: true, serving: true, terminating: false }],
      ['10.244.2.33', 'node-c', { ready: true, serving: true, terminating: false }],
    ]);
    // Halfway: the first new pod ready, the first old one terminating but still serving.
    const halfway = applyAll(
      initial,
      r.events.filter((e) => e.time <= 1_733_412_357_700_000_000n),
    );
    const mid = halfway.endpointSlices.find((s) => s.name === 'web-7xk2p');
    expect(mid?.endpoints.map((e) => [e.addresses[0], e.conditions.ready, e.conditions.serving, e.conditions.terminating])).toEqual([
      ['10.244.0.12', false, true, true],
      ['10.244.1.20', true, true, false],
      ['10.244.2.31', true, true, false],
      ['10.244.0.13', true, true, false],
    ]);
  });
});
