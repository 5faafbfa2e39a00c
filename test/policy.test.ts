// The Service API's traffic decisions, as kube-proxy (nftables mode) makes
// them: every source class (pod, this node, external) against every frontend
// kind (cluster IP, NodePort, external IP, load-balancer IP) under Cluster and
// Local traffic policies — backend set, DROP/REJECT, masquerading — and the
// backend's reply, built from what the datapath actually sent, must come back
// to the client with the addresses it used.
import { describe, expect, it } from 'vitest';
import type { Compiled } from '../control/compile/compiler.js';
import type { Datapath } from '../control/runtime/datapath.js';
import { decodeFrame, verifyChecksums } from '../traces/frames.js';
import { checksumsValid, endpoints, ipOf, makeNode, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';
import {
  ADDRESSES,
  ALL_EPS,
  CASES,
  CLUSTER_CIDRS,
  FAMILIES,
  LOCAL_EP,
  NODE_IP,
  REMOTE_EPS,
  SERVICE_RANGES,
  SOURCES,
  type Source,
  eps,
  expected,
  frontends,
  lbService,
  replyTo,
  sources,
} from './policy-cases.js';

async function cluster(opts: { clusterCIDRs?: string[]; masqueradeAll?: boolean } = { clusterCIDRs: CLUSTER_CIDRS }) {
  const { v4, v6 } = ADDRESSES;
  return program(
    Object.values(CASES).map((c) => resolvedService(c.svc, [c.endpoints])),
    {
      node: 'node-a',
      nodes: [makeNode('node-a', v4.node, v6.node), makeNode('node-b', v4.otherNode, v6.otherNode)],
      serviceClusterIPRanges: SERVICE_RANGES,
      ...opts,
    },
  );
}

function checkFlow(
  dp: Datapath,
  compiled: Compiled,
  label: string,
  client: string,
  clientPort: number,
  frontend: [string, number],
  want: ReturnType<typeof expected>,
  time: number,
): void {
  const v6 = client.includes(':');
  const [request] = runFrames(dp, [tcp(client, clientPort, frontend[0], frontend[1], ['SYN'])], [time]);
  if (want.outcome) {
    expect(`${request.verdict} ${request.reason}`, label).toBe(want.outcome);
    if (want.outcome.startsWith('TX')) {
      const icmp = decodeFrame(request.out);
      const message = (icmp.icmp ?? icmp.icmpv6)!;
      expect([ipOf(request.out).src, ipOf(request.out).dst, message.type, message.code], label).toEqual([
        frontend[0],
        client,
        v6 ? 1 : 3,
        v6 ? 4 : 3,
      ]);
      expect(checksumsValid(request.out), label).toBe(true);
    }
    return;
  }
  expect(request.reason, label).toBe('SERVICE');
  const backend = compiled.backends[request.backendId - 1];
  expect(want.backends, label).toContain(backend.ip);
  expect(request.verdict, label).toBe(backend.local ? 'REDIRECT' : 'TX');
  const out = decodeFrame(request.out);
  expect([ipOf(request.out).dst, out.tcp!.dport], label).toEqual([backend.ip, 8080]);
  expect(checksumsValid(request.out), label).toBe(true);
  if (want.snat) {
    expect(ipOf(request.out).src, label).toBe(ADDRESSES[v6 ? 'v6' : 'v4'].node);
    expect(out.tcp!.sport, label).toBeGreaterThanOrEqual(1024);
  } else {
    expect([ipOf(request.out).src, out.tcp!.sport], label).toEqual([client, clientPort]);
  }
  const [reply] = runFrames(dp, [replyTo(request.out)], [time + 0.001]);
  expect(`${reply.verdict} ${reply.reason}`, `${label} reply`).toBe('TX REPLY');
  const back = decodeFrame(reply.out);
  expect([ipOf(reply.out).src, back.tcp!.sport, ipOf(reply.out).dst, back.tcp!.dport], `${label} reply`).toEqual([
    frontend[0],
    frontend[1],
    client,
    clientPort,
  ]);
  expect(checksumsValid(reply.out), `${label} reply`).toBe(true);
}

describe('the policy matrix: source x frontend x traffic policy', () => {
  for (const family of FAMILIES) {
    for (const caseName of Object.keys(CASES)) {
      it(`${family} ${caseName}: every source and frontend`, async () => {
        const { dp, compiled } = await cluster();
        let port = 40000;
        let t = 1_800_000_000;
        for (const [kind, frontend] of Object.entries(frontends(CASES[caseName], family))) {
          for (const source of Object.keys(SOURCES) as Source[]) {
            // Several flows each, so that every allowed backend can show up and none other does.
            for (let i = 0; i < 12; i++) {
              checkFlow(
                dp,
                compiled,
                `${family} ${caseName} ${kind} from ${source}`,
                sources(family)[source],
                port++,
                frontend,
                expected(caseName, kind, source, true, family),
                t++,
              );
            }
          }
        }
      });
    }
  }

  it('without a known pod network nothing is a pod: no masquerade of cluster-IP traffic, no pod short-circuit', async () => {
    const { dp, compiled } = await cluster({});
    let port = 41000;
    for (const family of FAMILIES) {
      for (const source of Object.keys(SOURCES) as Source[]) {
        for (const caseName of ['cluster', 'local']) {
          for (const [kind, frontend] of Object.entries(frontends(CASES[caseName], family))) {
            checkFlow(
              dp,
              compiled,
              `${family} ${caseName} ${kind} from ${source}`,
              sources(family)[source],
              port++,
              frontend,
              expected(caseName, kind, source, false, family),
              1_800_000_000,
            );
          }
        }
      }
    }
  });

  it('--masquerade-all masquerades cluster-IP traffic from pods too', async () => {
    const { dp, compiled } = await cluster({ clusterCIDRs: CLUSTER_CIDRS, masqueradeAll: true });
    checkFlow(
      dp,
      compiled,
      'pod to cluster IP',
      SOURCES.pod,
      42000,
      frontends(CASES.cluster).ClusterIP,
      { backends: ALL_EPS, snat: true },
      1_800_000_000,
    );
  });
});

describe('masquerading', () => {
  it('masquerades a pod that reaches itself through its Service (hairpin)', async () => {
    const svc = makeService('default', 'self', '10.96.2.1', [{ port: 80, targetPort: 8080 }]);
    const { dp } = await program([resolvedService(svc, [endpoints([[LOCAL_EP, 8080, 'node-a']])])], {
      node: 'node-a',
      nodes: [makeNode('node-a', NODE_IP)],
      clusterCIDRs: ['10.244.0.0/16'],
    });
    const [r] = runFrames(dp, [tcp(LOCAL_EP, 50000, '10.96.2.1', 80, ['SYN'])]);
    const d = decodeFrame(r.out);
    expect([d.ipv4!.src, d.ipv4!.dst]).toEqual([NODE_IP, LOCAL_EP]);
    const [back] = runFrames(dp, [replyTo(r.out)]);
    const b = decodeFrame(back.out);
    expect([b.ipv4!.src, b.tcp!.sport, b.ipv4!.dst, b.tcp!.dport]).toEqual(['10.96.2.1', 80, LOCAL_EP, 50000]);
  });

  it('a flow that must choose again (its backend left) decides masquerading afresh', async () => {
    const svc = makeService('default', 'pair', '10.96.2.3', [{ port: 80, targetPort: 8080 }]);
    const { dp, compiled } = await program(
      [
        resolvedService(svc, [
          endpoints([
            [LOCAL_EP, 8080, 'node-a'],
            [REMOTE_EPS[0], 8080, 'node-b'],
          ]),
        ]),
      ],
      {
        node: 'node-a',
        nodes: [makeNode('node-a', NODE_IP)],
        clusterCIDRs: ['10.244.0.0/16'],
      },
    );
    const self = compiled.backends.find((b) => b.ip === LOCAL_EP)!.id;
    const other = compiled.backends.find((b) => b.ip === REMOTE_EPS[0])!.id;
    const table = (id: number) => new Uint8Array(new Uint32Array(compiled.maglevTableSize).fill(id).buffer);
    const key = new Uint8Array(new Uint32Array([4 * compiled.services[0].id]).buffer);
    dp.map('maglev').updateRaw(key, table(self));
    const [hairpin] = runFrames(dp, [tcp(LOCAL_EP, 50001, '10.96.2.3', 80, ['SYN'])]);
    expect([hairpin.backendId, hairpin.snat]).toEqual([self, true]);
    dp.map('maglev').updateRaw(key, table(other));
    dp.map('lb4Backends').delete({ value: self });
    const [again] = runFrames(dp, [tcp(LOCAL_EP, 50001, '10.96.2.3', 80, ['ACK'])]);
    expect([again.backendId, again.snat]).toEqual([other, false]);
    expect(decodeFrame(again.out).ipv4!.src).toBe(LOCAL_EP);
  });

  it('gives concurrent flows distinct ports, never reuses a live one, and drops when the range is exhausted', async () => {
    const svc = makeService('default', 'one', '10.96.2.2', [{ port: 80, targetPort: 8080 }], { type: 'NodePort' });
    svc.ports[0].nodePort = 30500;
    const { dp } = await program([resolvedService(svc, [endpoints([[REMOTE_EPS[0], 8080, 'node-b']])])], {
      node: 'node-a',
      nodes: [makeNode('node-a', NODE_IP)],
      snatPortRange: [20000, 20002],
    });
    const t = 1_800_000_000;
    const flows = [1, 2, 3, 4].map((i) => tcp(`172.16.0.${i}`, 1234, NODE_IP, 30500, ['SYN']));
    const results = runFrames(dp, flows, [t, t, t, t]);
    const ports = results.slice(0, 3).map((r) => decodeFrame(r.out).tcp!.sport);
    expect(new Set(ports).size).toBe(3);
    for (const p of ports) expect(p).toBeGreaterThanOrEqual(20000);
    expect(`${results[3].verdict} ${results[3].reason}`).toBe('DROP SNAT_EXHAUSTED');
    // Each reply goes to its own client.
    results.slice(0, 3).forEach((r, i) => {
      const [back] = runFrames(dp, [replyTo(r.out)], [t + 1]);
      expect(decodeFrame(back.out).ipv4!.dst).toBe(`172.16.0.${i + 1}`);
    });
    // Once the first flows have timed out (TCP established: 24 h), their ports are free again.
    const [late] = runFrames(dp, [flows[3]], [t + 86400 + 10]);
    expect(late.reason).toBe('SERVICE');
  });

  it('marks masqueraded packets in the verdict, both ways, and only those', async () => {
    const { dp } = await cluster();
    const [masqueraded, kept] = runFrames(dp, [
      tcp(SOURCES.external, 43000, NODE_IP, 30081, ['SYN']), // ETP Cluster
      tcp(SOURCES.external, 43001, '203.0.113.52', 80, ['SYN']), // ETP Local: source kept
    ]);
    const [reply, keptReply] = runFrames(dp, [replyTo(masqueraded.out), replyTo(kept.out)]);
    expect([masqueraded.snat, reply.snat, kept.snat, keptReply.snat]).toEqual([true, true, false, false]);
  });
});

describe('load-balancer source ranges', () => {
  const ranged = (ranges: string[]) => lbService('ranged', '10.96.3.1', 9, 'Cluster', { loadBalancerSourceRanges: ranges });

  it('drop sources outside the ranges at the LB IP only, not at NodePorts or external IPs', async () => {
    const svc = ranged(['172.16.0.0/16', '10.9.9.9/32']);
    const { dp } = await program([resolvedService(svc, [eps(ALL_EPS)])], { node: 'node-a', nodes: [makeNode('node-a', NODE_IP)] });
    const lb = '203.0.113.59';
    const results = runFrames(dp, [
      tcp('172.16.200.1', 1, lb, 80, ['SYN']),
      tcp('10.9.9.9', 2, lb, 80, ['SYN']),
      tcp('172.17.0.1', 3, lb, 80, ['SYN']),
      tcp('10.9.9.8', 4, lb, 80, ['SYN']),
      tcp('172.17.0.1', 5, NODE_IP, 30089, ['SYN']),
      tcp('172.17.0.1', 6, '198.51.100.9', 80, ['SYN']),
    ]);
    expect(results.map((r) => r.reason)).toEqual(['SERVICE', 'SERVICE', 'SOURCE_RANGE', 'SOURCE_RANGE', 'SERVICE', 'SERVICE']);
    expect(results[2].verdict).toBe('DROP');
  });

  it('allow the LB IP itself as a source when a node IP lies inside the ranges', async () => {
    for (const [ranges, allowed] of [
      [['192.168.0.0/24'], true],
      [['172.16.0.0/16'], false],
    ] as const) {
      const { dp } = await program([resolvedService(ranged([...ranges]), [eps(ALL_EPS)])], {
        node: 'node-a',
        nodes: [makeNode('node-a', NODE_IP)],
      });
      const [r] = runFrames(dp, [tcp('203.0.113.59', 7, '203.0.113.59', 80, ['SYN'])]);
      expect(r.reason).toBe(allowed ? 'SERVICE' : 'SOURCE_RANGE');
    }
  });
});

describe('session affinity (ClientIP)', () => {
  const sticky = makeService('default', 'sticky', '10.96.4.1', [{ port: 80, targetPort: 8080 }], {
    sessionAffinity: 'ClientIP',
    affinityTimeoutSeconds: 60,
  });
  const many = endpoints(Array.from({ length: 8 }, (_, i): [string, number, string] => [`10.244.7.${i + 1}`, 8080, 'node-b']));

  it('keeps a client on one backend across connections, per client, until the timeout', async () => {
    const { dp } = await program([resolvedService(sticky, [many])]);
    const t = 1_800_000_000;
    for (const client of ['10.1.0.1', '10.1.0.2', '10.1.0.3']) {
      const results = runFrames(
        dp,
        Array.from({ length: 20 }, (_, i) => tcp(client, 10000 + i, '10.96.4.1', 80, ['SYN'])),
        Array.from({ length: 20 }, (_, i) => t + i),
      );
      expect(new Set(results.map((r) => r.backendId)).size, client).toBe(1);
    }
    // Within the timeout since the last new connection, still the same; after it, Maglev decides afresh.
    const first = runFrames(dp, [tcp('10.1.0.1', 20000, '10.96.4.1', 80, ['SYN'])], [t + 19 + 59])[0].backendId;
    expect(runFrames(dp, [tcp('10.1.0.1', 20001, '10.96.4.1', 80, ['SYN'])], [t + 19 + 59 + 59])[0].backendId).toBe(first);
    const later = runFrames(
      dp,
      Array.from({ length: 30 }, (_, i) => tcp('10.1.0.1', 30000 + i * 7, '10.96.4.1', 80, ['SYN'])),
      Array.from({ length: 30 }, (_, i) => t + 1000 + i * 61),
    );
    expect(new Set(later.map((r) => r.backendId)).size).toBeGreaterThan(1);
  });

  it('replaces an affinity whose backend is no longer usable', async () => {
    const { dp, compiled } = await program([resolvedService(sticky, [many])]);
    const [r] = runFrames(dp, [tcp('10.1.0.9', 10000, '10.96.4.1', 80, ['SYN'])]);
    const svc = compiled.services[0];
    // Control plane: the backend leaves the service's table.
    dp.map('lbMembers').delete({ table: 4 * svc.id, backendId: r.backendId });
    const rest = svc.cluster.backendIds.filter((id) => id !== r.backendId);
    const table = new Uint32Array(compiled.maglevTableSize).map((_, i) => rest[i % rest.length]);
    dp.map('maglev').updateRaw(new Uint8Array(new Uint32Array([4 * svc.id]).buffer), new Uint8Array(table.buffer));
    const [next] = runFrames(dp, [tcp('10.1.0.9', 10001, '10.96.4.1', 80, ['SYN'])]);
    expect(next.backendId).not.toBe(r.backendId);
    const [again] = runFrames(dp, [tcp('10.1.0.9', 10002, '10.96.4.1', 80, ['SYN'])]);
    expect(again.backendId).toBe(next.backendId);
  });
});

describe('endpoint conditions', () => {
  const svc = makeService('default', 'draining', '10.96.5.1', [{ port: 80, targetPort: 8080 }]);
  const terminating = { ready: false, serving: true, terminating: true };

  it('uses ready endpoints, falls back to serving-terminating ones, and rejects when none serve', async () => {
    const mixed = [...endpoints([['10.244.8.1', 8080]]), ...endpoints([['10.244.8.2', 8080]], terminating)];
    const { dp, compiled } = await program([resolvedService(svc, [mixed])]);
    const results = runFrames(
      dp,
      Array.from({ length: 40 }, (_, i) => tcp('10.1.0.1', 1000 + i, '10.96.5.1', 80, ['SYN'])),
    );
    expect(new Set(results.map((r) => compiled.backends[r.backendId - 1].ip))).toEqual(new Set(['10.244.8.1']));

    const onlyTerminating = endpoints(
      [
        ['10.244.8.2', 8080],
        ['10.244.8.3', 8080],
      ],
      terminating,
    );
    const second = await program([resolvedService(svc, [onlyTerminating])]);
    const drained = runFrames(
      second.dp,
      Array.from({ length: 40 }, (_, i) => tcp('10.1.0.1', 1000 + i, '10.96.5.1', 80, ['SYN'])),
    );
    expect(new Set(drained.map((r) => second.compiled.backends[r.backendId - 1].ip))).toEqual(new Set(['10.244.8.2', '10.244.8.3']));

    const gone = endpoints([['10.244.8.2', 8080]], { ready: false, serving: false, terminating: true });
    const third = await program([resolvedService(svc, [gone])]);
    expect(runFrames(third.dp, [tcp('10.1.0.1', 1, '10.96.5.1', 80, ['SYN'])])[0].reason).toBe('NO_ENDPOINTS');
  });

  it('keeps established flows on a backend that turned terminating; new flows never go there', async () => {
    const two = endpoints([
      ['10.244.8.1', 8080],
      ['10.244.8.2', 8080],
    ]);
    const { dp, compiled } = await program([resolvedService(svc, [two])]);
    const flows = Array.from({ length: 40 }, (_, i) => tcp('10.1.0.1', 2000 + i, '10.96.5.1', 80, ['SYN']));
    const first = runFrames(dp, flows);
    const leaving = compiled.backends.find((b) => b.ip === '10.244.8.2')!.id;
    const staying = compiled.backends.find((b) => b.ip === '10.244.8.1')!.id;
    expect(first.some((r) => r.backendId === leaving)).toBe(true);
    // Control plane: 10.244.8.2 is terminating while another is ready, so it leaves the table.
    const s = compiled.services[0];
    dp.map('maglev').updateRaw(
      new Uint8Array(new Uint32Array([4 * s.id]).buffer),
      new Uint8Array(new Uint32Array(compiled.maglevTableSize).fill(staying).buffer),
    );
    dp.map('lbMembers').delete({ table: 4 * s.id, backendId: leaving });
    const established = runFrames(
      dp,
      flows.map((_, i) => tcp('10.1.0.1', 2000 + i, '10.96.5.1', 80, ['ACK'])),
    );
    expect(established.map((r) => r.backendId)).toEqual(first.map((r) => r.backendId));
    const fresh = runFrames(
      dp,
      Array.from({ length: 40 }, (_, i) => tcp('10.1.0.2', 3000 + i, '10.96.5.1', 80, ['SYN'])),
    );
    expect(fresh.every((r) => r.backendId === staying)).toBe(true);
  });
});

describe('protocols', () => {
  it('UDP through a NodePort with masquerading, and its reply', async () => {
    const dns = makeService('default', 'dns', '10.96.6.1', [{ name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 }], {
      type: 'NodePort',
    });
    const { dp } = await program([resolvedService(dns, [endpoints([['10.244.9.1', 5353, 'node-b']])])], {
      node: 'node-a',
      nodes: [makeNode('node-a', NODE_IP)],
    });
    const [r] = runFrames(dp, [udp('172.16.1.1', 5555, NODE_IP, 30053)]);
    const d = decodeFrame(r.out);
    expect([d.ipv4!.src, d.ipv4!.dst, d.udp!.dport]).toEqual([NODE_IP, '10.244.9.1', 5353]);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
    const [back] = runFrames(dp, [replyTo(r.out, new Uint8Array([1, 2, 3]))]);
    const b = decodeFrame(back.out);
    expect([b.ipv4!.src, b.udp!.sport, b.ipv4!.dst, b.udp!.dport]).toEqual([NODE_IP, 30053, '172.16.1.1', 5555]);
    expect(verifyChecksums(back.out)).toMatchObject({ ipv4: true, l4: true });
  });

  it('one Service with TCP and UDP on the same port number', async () => {
    const both = makeService('default', 'both', '10.96.6.2', [
      { name: 'tcp', port: 53, targetPort: 1053 },
      { name: 'udp', port: 53, protocol: 'UDP', targetPort: 2053 },
    ]);
    const { dp, compiled } = await program([resolvedService(both, [endpoints([['10.244.9.2', 1053]]), endpoints([['10.244.9.3', 2053]])])]);
    const [t, u] = runFrames(dp, [tcp('10.1.0.1', 1, '10.96.6.2', 53, ['SYN']), udp('10.1.0.1', 1, '10.96.6.2', 53)]);
    expect([compiled.services[t.serviceId - 1].name, decodeFrame(t.out).tcp!.dport]).toEqual(['default/both:tcp', 1053]);
    expect([compiled.services[u.serviceId - 1].name, decodeFrame(u.out).udp!.dport]).toEqual(['default/both:udp', 2053]);
  });
});
