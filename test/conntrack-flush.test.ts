// kube-proxy's stale UDP conntrack flush (control/runtime/conntrack-flush.ts):
// real conntrack entries made by running flows through the datapath, a
// change applied in place, then the flush; the flows each change must flush
// are worked out from where the datapath sent each flow (its rewritten
// frames), and the maps read back through the map API.
import { describe, expect, it } from 'vitest';
import { resolveServices } from '../control/cluster/index.js';
import type { ClusterState, EndpointConditions, EndpointSlice, ProxyConfig } from '../control/cluster/state.js';
import { compile, type CompileOptions } from '../control/compile/compiler.js';
import { CT_F, type StructValue } from '../control/compile/layout.js';
import { countFlowsOnBackends, flushStaleUdp } from '../control/runtime/conntrack-flush.js';
import { Batch } from '../control/runtime/datapath.js';
import { loadProgram } from '../control/runtime/loader.js';
import { applyStateChange } from '../control/runtime/rebase.js';
import { trackProgram, type LiveProgram } from '../control/runtime/update.js';
import { decodeFrame } from '../traces/frames.js';
import { READY, makeNode, makeService, runFrames, tcp, udp } from './helpers.js';

const OPTS: CompileOptions = { node: 'node-a', seed: 5, maglevTableSize: 1021 };
const PROXY: ProxyConfig = {
  origin: { file: 'test', object: 'KubeProxyConfiguration' },
  clusterCIDRs: ['10.244.0.0/16'],
  nodePortAddresses: [],
  mode: 'nftables',
  conntrack: {},
};
const DNS = makeService('default', 'dns', '10.96.0.53', [
  { name: 'dns', protocol: 'UDP', port: 53 },
  { name: 'dns-tcp', protocol: 'TCP', port: 53 },
]);
const GAME = makeService('default', 'game', '10.96.0.77', [{ name: 'game', protocol: 'UDP', port: 7777, nodePort: 30777 }], {
  type: 'NodePort',
});
const TERMINATING: EndpointConditions = { ready: false, serving: true, terminating: true };
const GONE_NOT_SERVING: EndpointConditions = { ready: false, serving: false, terminating: true };

function dnsSlice(endpoints: Array<[string, EndpointConditions?]>): EndpointSlice {
  return {
    origin: { file: 'test', object: 'EndpointSlice default/dns-a' },
    namespace: 'default',
    name: 'dns-a',
    serviceName: 'dns',
    addressType: 'IPv4',
    endpoints: endpoints.map(([ip, conditions]) => ({ addresses: [ip], nodeName: 'node-b', conditions: conditions ?? READY })),
    ports: [
      { name: 'dns', protocol: 'UDP', port: 53 },
      { name: 'dns-tcp', protocol: 'TCP', port: 53 },
    ],
  };
}

function gameSlice(ips: string[]): EndpointSlice {
  return {
    origin: { file: 'test', object: 'EndpointSlice default/game-a' },
    namespace: 'default',
    name: 'game-a',
    serviceName: 'game',
    addressType: 'IPv4',
    endpoints: ips.map((ip) => ({ addresses: [ip], nodeName: 'node-b', conditions: READY })),
    ports: [{ name: 'game', protocol: 'UDP', port: 7777 }],
  };
}

const DNS_IPS = ['10.244.5.1', '10.244.5.2', '10.244.5.3'];
const GAME_IPS = ['10.244.6.1', '10.244.6.2'];
const INITIAL: ClusterState = {
  services: [DNS, GAME],
  endpointSlices: [dnsSlice(DNS_IPS.map((ip) => [ip])), gameSlice(GAME_IPS)],
  nodes: [makeNode('node-a', '192.168.0.10'), makeNode('node-b', '192.168.0.11')],
  proxyConfig: PROXY,
  notes: [],
};

/** The packet clock: flows open in the first second; syncs come a second later. */
const T0 = 1_700_000_000;
const AT = (seconds: number) => BigInt(T0 + seconds) * 1_000_000_000n;

/** A flow as the datapath sent it: client, the backend it chose, and the source it went out with (masqueraded or not). */
interface Flow {
  client: string;
  sport: number;
  backend: string;
  /** The source of the rewritten frame: the client's, or the masquerade address and port. */
  outSrc: string;
  outSport: number;
}

async function setup(): Promise<{ live: LiveProgram; dns: Flow[]; dnsTcp: Flow[]; game: Flow[] }> {
  const resolved = resolveServices(INITIAL).services;
  const compiled = compile(INITIAL, resolved, OPTS);
  const dp = await loadProgram(compiled, { ctEntries: 4096, room: { backends: 8, tables: 4, members: 16 } });
  const live = trackProgram(dp, { state: INITIAL, resolved, compiled, opts: OPTS });
  const open = (frames: Array<[string, number, Uint8Array]>): Flow[] => {
    const times = frames.map((_, i) => T0 + i * 0.001);
    return runFrames(
      dp,
      frames.map(([, , f]) => f),
      times,
    ).map((r, i) => {
      expect(r.verdict).not.toBe('DROP');
      const out = decodeFrame(r.out);
      const l4 = out.udp ?? out.tcp!;
      return { client: frames[i][0], sport: frames[i][1], backend: out.ipv4!.dst, outSrc: out.ipv4!.src, outSport: l4.sport };
    });
  };
  const pods = Array.from({ length: 60 }, (_, i) => `10.244.9.${i + 1}`);
  const outside = Array.from({ length: 60 }, (_, i) => `172.16.0.${i + 1}`);
  const dns = open(pods.map((c) => [c, 5353, udp(c, 5353, '10.96.0.53', 53)]));
  const dnsTcp = open(pods.map((c) => [c, 40000, tcp(c, 40000, '10.96.0.53', 53, ['SYN'])]));
  const game = open(outside.map((c) => [c, 9000, udp(c, 9000, '192.168.0.10', 30777)]));
  // Every backend has flows, so each test below flushes some and keeps some.
  for (const ip of DNS_IPS) expect(dns.filter((f) => f.backend === ip).length).toBeGreaterThan(5);
  for (const ip of DNS_IPS) expect(dnsTcp.filter((f) => f.backend === ip).length).toBeGreaterThan(5);
  for (const ip of GAME_IPS) expect(game.filter((f) => f.backend === ip).length).toBeGreaterThan(5);
  expect(game.every((f) => f.outSrc === '192.168.0.10')).toBe(true); // masqueraded: from outside to a NodePort
  return { live, dns, dnsTcp, game };
}

/** The conntrack entries through the map API, by tuple. */
function conntrack(live: LiveProgram): Map<string, StructValue> {
  return new Map([...live.dp.map('ct4').entries()].map(([k, v]) => [`${k.saddr}:${k.sport} ${k.daddr}:${k.dport} ${k.proto} ${k.dir}`, v]));
}

const UDP = 17;
const TCP = 6;
/** The original entry of a flow to a frontend, and its reply entry: from the backend to the client, or to the masquerade tuple. */
const originalKey = (f: Flow, frontend: string, port: number, proto: number) => `${f.client}:${f.sport} ${frontend}:${port} ${proto} 0`;
const replyKey = (f: Flow, backendPort: number, proto: number) => `${f.backend}:${backendPort} ${f.outSrc}:${f.outSport} ${proto} 1`;
const flushed = (v: StructValue | undefined) => v !== undefined && ((v.flags as number) & CT_F.FLUSHED) !== 0;

/** Applies the new state in place (the initial one before it), then the flush a second after the flows opened. */
function change(live: LiveProgram, after: ClusterState, now = AT(1)) {
  const next = applyStateChange(live, after);
  return { live: next.live, change: next.change, flushed: flushStaleUdp(next.live, INITIAL, now) };
}

/** The next datagram of each flow, two seconds in: where it went and what the datapath says happened to its flow. */
function nextPackets(live: LiveProgram, flows: Flow[], frontend: string, port: number): Array<{ to: string; flowChange?: string }> {
  const frames = flows.map((f) => udp(f.client, f.sport, frontend, port));
  const batch = live.dp.createBatch(
    frames.length,
    frames.reduce((n, f) => n + Batch.footprint(f.length), 0),
  );
  const results = runFrames(
    live.dp,
    frames,
    frames.map((_, i) => T0 + 2 + i * 0.001),
    batch,
  );
  return results.map((r, i) => ({ to: decodeFrame(r.out).ipv4!.dst, flowChange: batch.flowChange(i) }));
}

/** Each DNS UDP flow is flushed exactly when its backend is in `stale`; TCP flows never are. */
function expectDnsFlushed(live: LiveProgram, dns: Flow[], dnsTcp: Flow[], stale: (backend: string) => boolean): void {
  const ct = conntrack(live);
  for (const f of dns) {
    const gone = stale(f.backend);
    expect(flushed(ct.get(originalKey(f, '10.96.0.53', 53, UDP))), `${f.client} -> ${f.backend}`).toBe(gone);
    expect(ct.has(replyKey(f, 53, UDP)), `${f.client} <- ${f.backend}`).toBe(!gone);
  }
  for (const f of dnsTcp) {
    expect(flushed(ct.get(originalKey(f, '10.96.0.53', 53, TCP)))).toBe(false);
    expect(ct.has(replyKey(f, 53, TCP))).toBe(true);
  }
}

describe('the stale UDP conntrack flush', () => {
  it('flushes the UDP flows of a backend that left a ClusterIP Service, and only those; a census counts the flows it kept', async () => {
    const { live, dns, dnsTcp } = await setup();
    const after = { ...INITIAL, endpointSlices: [dnsSlice([['10.244.5.1'], ['10.244.5.3']]), INITIAL.endpointSlices[1]] };
    const applied = applyStateChange(live, after);
    // Before the flush: the flows on the backend that left, UDP and TCP, counted per Service port.
    const onIt = (flows: Flow[]) => flows.filter((f) => f.backend === '10.244.5.2').length;
    expect(countFlowsOnBackends(applied.live, applied.change.removedBackendIds, AT(1))).toEqual({
      'default/dns:dns': onIt(dns),
      'default/dns:dns-tcp': onIt(dnsTcp),
    });
    expect(flushStaleUdp(applied.live, INITIAL, AT(1))).toEqual({ 'default/dns:dns': onIt(dns) });
    expectDnsFlushed(applied.live, dns, dnsTcp, (b) => b === '10.244.5.2');
    // Flushed flows are over: neither flushed again nor counted.
    expect(flushStaleUdp(applied.live, INITIAL, AT(1))).toEqual({});
    expect(countFlowsOnBackends(applied.live, applied.change.removedBackendIds, AT(1))).toEqual({ 'default/dns:dns-tcp': onIt(dnsTcp) });
    // The next datagram of a flushed flow is load-balanced again, to a backend that serves, and says so; the others stay.
    const next = nextPackets(applied.live, dns, '10.96.0.53', 53);
    dns.forEach((f, i) => {
      if (f.backend === '10.244.5.2')
        expect([next[i].flowChange, ['10.244.5.1', '10.244.5.3'].includes(next[i].to)]).toEqual(['FLUSHED', true]);
      else expect([next[i].flowChange, next[i].to]).toEqual([undefined, f.backend]);
    });
  });

  it('keeps the flows of a backend that is still serving while terminating, and flushes those of one no longer serving', async () => {
    const { live, dns, dnsTcp } = await setup();
    const draining = {
      ...INITIAL,
      endpointSlices: [
        dnsSlice([['10.244.5.1'], ['10.244.5.2', TERMINATING], ['10.244.5.3', GONE_NOT_SERVING]]),
        INITIAL.endpointSlices[1],
      ],
    };
    const result = change(live, draining);
    expect(result.change.endpoints).toEqual([
      { service: 'default/dns:dns', added: [], removed: ['10.244.5.3:53'], terminating: ['10.244.5.2:53'] },
      { service: 'default/dns:dns-tcp', added: [], removed: ['10.244.5.3:53'], terminating: ['10.244.5.2:53'] },
    ]);
    expect(result.flushed).toEqual({ 'default/dns:dns': dns.filter((f) => f.backend === '10.244.5.3').length });
    expectDnsFlushed(result.live, dns, dnsTcp, (b) => b === '10.244.5.3');
  });

  it('flushes every UDP flow of a deleted Service, and of a Service left with no endpoint', async () => {
    for (const after of [
      { ...INITIAL, services: [GAME] },
      { ...INITIAL, endpointSlices: [dnsSlice([]), INITIAL.endpointSlices[1]] },
    ]) {
      const { live, dns, dnsTcp } = await setup();
      const result = change(live, after);
      expect(result.flushed).toEqual({ 'default/dns:dns': dns.length });
      expectDnsFlushed(result.live, dns, dnsTcp, () => true);
    }
  });

  it('flushes NodePort flows by port, freeing the masquerade binding of each', async () => {
    const { live, game } = await setup();
    const result = change(live, { ...INITIAL, endpointSlices: [INITIAL.endpointSlices[0], gameSlice(['10.244.6.2'])] });
    const stale = game.filter((f) => f.backend === '10.244.6.1');
    expect(result.flushed).toEqual({ 'default/game:game': stale.length });
    const ct = conntrack(result.live);
    const bindings = new Set(
      [...result.live.dp.map('snat4').entries()].map(([k, v]) => `${k.saddr}:${k.sport} ${k.daddr}:${k.dport} -> ${v.address}:${v.port}`),
    );
    for (const f of game) {
      const gone = f.backend === '10.244.6.1';
      expect(flushed(ct.get(originalKey(f, '192.168.0.10', 30777, UDP)))).toBe(gone);
      expect(ct.has(replyKey(f, 7777, UDP))).toBe(!gone);
      expect(bindings.has(`${f.backend}:7777 ${f.outSrc}:${f.outSport} -> ${f.client}:${f.sport}`)).toBe(!gone);
    }
    const next = nextPackets(result.live, game, '192.168.0.10', 30777);
    game.forEach((f, i) => {
      const gone = f.backend === '10.244.6.1';
      expect([next[i].flowChange, next[i].to]).toEqual(gone ? ['FLUSHED', '10.244.6.2'] : [undefined, f.backend]);
    });
  });

  it('flushes IPv6 flows alike', async () => {
    const dns6 = makeService('default', 'dns6', 'fd00:96::53', [{ name: 'dns', protocol: 'UDP', port: 53 }], { ipFamilies: ['IPv6'] });
    const slice6 = (ips: string[]): EndpointSlice => ({
      ...dnsSlice(ips.map((ip) => [ip])),
      name: 'dns6-a',
      serviceName: 'dns6',
      addressType: 'IPv6',
      ports: [{ name: 'dns', protocol: 'UDP', port: 53 }],
    });
    const backends = ['fd00:244:5::1', 'fd00:244:5::2'];
    const state: ClusterState = { ...INITIAL, services: [dns6], endpointSlices: [slice6(backends)] };
    const resolved = resolveServices(state).services;
    const compiled = compile(state, resolved, OPTS);
    const live = trackProgram(await loadProgram(compiled, { ctEntries: 4096, room: { backends: 4, tables: 2, members: 4 } }), {
      state,
      resolved,
      compiled,
      opts: OPTS,
    });
    const clients = Array.from({ length: 40 }, (_, i) => `fd00:244:9::${i + 1}`);
    const sentTo = runFrames(
      live.dp,
      clients.map((c) => udp(c, 5353, 'fd00:96::53', 53)),
    ).map((r) => decodeFrame(r.out).ipv6!.dst);
    const stale = sentTo.filter((b) => b === 'fd00:244:5::1').length;
    expect(stale).toBeGreaterThan(5);
    const next = applyStateChange(live, { ...state, endpointSlices: [slice6(['fd00:244:5::2'])] }).live;
    expect(flushStaleUdp(next, state, AT(1))).toEqual({ 'default/dns6:dns': stale });
    const ct6 = new Map([...next.dp.map('ct6').entries()].map(([k, v]) => [`${k.saddr} ${k.daddr} ${k.dir}`, v]));
    clients.forEach((c, i) => {
      const gone = sentTo[i] === 'fd00:244:5::1';
      expect(flushed(ct6.get(`${c} fd00:96::53 0`))).toBe(gone);
      expect(ct6.has(`${sentTo[i]} ${c} 1`)).toBe(!gone);
    });
  });

  it('leaves entries that have timed out alone', async () => {
    const { live, dns, dnsTcp } = await setup();
    // Past the UDP timeout (30 s without a reply): every UDP entry is dead, though still in the map.
    const result = change(live, { ...INITIAL, services: [GAME] }, AT(40));
    expect(result.flushed).toEqual({});
    expectDnsFlushed(result.live, dns, dnsTcp, () => false);
  });
});
