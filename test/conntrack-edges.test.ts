// Conntrack corner cases the reference model (model/) found the datapath
// getting wrong, pinned down one by one: a reopened connection frees its old
// flow, a reply wins over a frontend that shares its address and port, a
// dropped flow names no backend, NodePorts only in the Service's families.
import { describe, expect, it } from 'vitest';
import { endpoints, ipOf, makeNode, makeService, program, resolvedService, runFrames, tcp } from './helpers.js';

const NODE4 = '192.168.0.10';
const NODE6 = 'fd00:168::10';
const BACKEND = '10.244.2.5';
const CLIENT = '203.0.113.7';

/** A NodePort Service with one backend, every flow masqueraded through the single port `snatPort`. */
async function oneMasqueradePort(snatPort: number) {
  const svc = makeService('default', 'web', '10.96.0.10', [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }], {
    type: 'NodePort',
  });
  return program([resolvedService(svc, [endpoints([[BACKEND, 8080, 'node-b']])])], {
    node: 'node-a',
    nodes: [makeNode('node-a', NODE4, NODE6)],
    masqueradeAll: true,
    snatPortRange: [snatPort, snatPort],
    clusterCIDRs: ['10.244.0.0/16'],
    serviceClusterIPRanges: ['10.96.0.0/12'],
  });
}

const T0 = 1_800_000_000;

describe('conntrack corner cases', () => {
  it('a SYN reopening a closing flow ends the old one: its masquerade port serves the new flow', async () => {
    const { dp } = await oneMasqueradePort(40000);
    const [syn] = runFrames(dp, [tcp(CLIENT, 5000, NODE4, 30080, ['SYN'])], [T0]);
    expect(syn.reason).toBe('SERVICE');
    runFrames(dp, [tcp(CLIENT, 5000, NODE4, 30080, ['FIN', 'ACK'])], [T0 + 1]);
    // Within the closing timeout: without ending the old flow, its reply entry would still own port 40000.
    const [again] = runFrames(dp, [tcp(CLIENT, 5000, NODE4, 30080, ['SYN'])], [T0 + 2]);
    expect(`${again.verdict} ${again.reason}`).toBe('TX SERVICE');
    const [reply] = runFrames(dp, [tcp(BACKEND, 8080, NODE4, 40000, ['SYN', 'ACK'])], [T0 + 3]);
    expect(`${reply.verdict} ${reply.reason}`).toBe('TX REPLY');
    expect(ipOf(reply.out)).toMatchObject({ src: NODE4, dst: CLIENT });
  });

  it('a masqueraded flow that runs out of ports is dropped naming no backend', async () => {
    const { dp } = await oneMasqueradePort(40000);
    const [first, second] = runFrames(dp, [tcp(CLIENT, 5000, NODE4, 30080, ['SYN']), tcp(CLIENT, 5001, NODE4, 30080, ['SYN'])], [T0, T0]);
    expect(first.backendId).toBeGreaterThan(0);
    expect([second.verdict, second.reason, second.backendId]).toEqual(['DROP', 'SNAT_EXHAUSTED', 0]);
  });

  it('a reply whose masquerade port is also a NodePort is reverse-NATed, not load-balanced', async () => {
    const { dp } = await oneMasqueradePort(30080);
    runFrames(dp, [tcp(CLIENT, 5000, NODE4, 30080, ['SYN'])], [T0]);
    // backend -> node:30080 is both the flow's reply tuple and the NodePort frontend.
    const [reply] = runFrames(dp, [tcp(BACKEND, 8080, NODE4, 30080, ['SYN', 'ACK'])], [T0 + 1]);
    expect(`${reply.verdict} ${reply.reason}`).toBe('TX REPLY');
    expect(ipOf(reply.out)).toMatchObject({ src: NODE4, dst: CLIENT });
  });

  it('a single-stack Service gets NodePorts only on the node addresses of its family', async () => {
    const { compiled } = await oneMasqueradePort(40000);
    const nodePorts = compiled.services[0].frontends.filter((f) => f.kind === 'NodePort').map((f) => f.address);
    expect(nodePorts).toEqual([NODE4]);
  });
});
