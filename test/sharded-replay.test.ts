// replay --workers N against one worker: the same verdict lines, output bytes
// and summary, on the bundled sample and on the regression cases, which hold
// masqueraded NodePort flows and their replies, IPv6, UDP and SCTP, and a
// capture taken on a node whose replies go to the node's own masquerade
// tuples. The masquerade ports are equal too, by design (datapath/snat.ts
// port classes).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { clientHash } from '../model/flow-hash.js';
import { loadProgram } from '../control/runtime/loader.js';
import { replay } from '../control/runtime/replay.js';
import { replaySharded } from '../control/runtime/sharded-replay.js';
import { buildFrame, decodeFrame } from '../traces/frames.js';
import { createPcapWriter } from '../traces/pcap.js';
import { cli, endpoints, makeNode, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-workers-'));
const VIP = '10.96.0.10';
const NODE_IP = '192.168.0.10';

/** The answer to a frame as it left the datapath: addresses and ports swapped. */
function answer(sent: Uint8Array): Uint8Array {
  const d = decodeFrame(sent);
  const ip = d.ipv4!;
  return d.tcp ? tcp(ip.dst, d.tcp.dport, ip.src, d.tcp.sport, ['SYN', 'ACK']) : udp(ip.dst, d.udp!.dport, ip.src, d.udp!.sport);
}

/** An ICMP destination unreachable from `from` to `to` quoting the IPv4 packet of `frame`. */
function icmpError(from: string, to: string, frame: Uint8Array): Uint8Array {
  return buildFrame({
    srcMac: '02:00:00:00:00:09',
    dstMac: '02:00:00:00:00:0a',
    ipv4: { src: from, dst: to },
    l4: { kind: 'icmp', type: 3, code: 3, rest: 0 },
    payload: frame.slice(14, 14 + 28),
  }).slice();
}

/** A UDP datagram in three IPv4 fragments. */
function udpFragments(src: string, sport: number, dst: string, dport: number, id: number): Uint8Array[] {
  const whole = buildFrame({
    srcMac: '02:00:00:00:00:01',
    dstMac: '02:00:00:00:00:02',
    ipv4: { src, dst, id },
    l4: { kind: 'udp', sport, dport },
    payload: new Uint8Array(40).fill(7),
  });
  const datagram = whole.subarray(14 + 20);
  return [0, 16, 32].map((off) =>
    buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src, dst, id, fragOffset: off / 8, moreFragments: off + 16 < datagram.length, protocol: 17 },
      l4: { kind: 'raw', protocol: 17 },
      payload: datagram.subarray(off, Math.min(off + 16, datagram.length)),
    }).slice(),
  );
}
const CASES = join(PROJECT_ROOT, 'test', 'cases');

/** A regression case's capture and replay flags, replayed with two workers. */
function caseInput(name: string, under: string): [string, string, string[], number[]] {
  const dir = join(under, name);
  const capture = join(dir, name === 'cooked-pcapng' ? 'input.pcapng' : 'input.pcap');
  return [name, capture, ['--cluster', join(dir, 'cluster.yaml'), ...readFileSync(join(dir, 'args'), 'utf8').trim().split(/\s+/)], [2]];
}

/** Replays with `workers` workers; returns the verdict lines, output bytes and the summary without its notes. */
async function run(trace: string, args: string[], workers: number, name: string, outExt = 'pcap') {
  const out = join(tmp, `${name}-${workers}.${outExt}`);
  const verdicts = join(tmp, `${name}-${workers}.jsonl`);
  const summary = join(tmp, `${name}-${workers}.json`);
  const r = await cli(['replay', trace, ...args, '--out', out, '--verdicts', verdicts, '--summary', summary, '--workers', String(workers)]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const s = JSON.parse(readFileSync(summary, 'utf8'));
  const perWorker = (s.notes as string[]).find((n) => n.includes('workers decided'));
  delete s.notes;
  return { verdicts: readFileSync(verdicts, 'utf8'), out: readFileSync(out), summary: s, perWorker };
}

const inputs: Array<[string, string, string[], number[]]> = [
  [
    'sample',
    join(PROJECT_ROOT, 'traces/samples/sample.pcap'),
    ['--cluster', join(PROJECT_ROOT, 'traces/samples/cluster.yaml'), '--node', 'node-a'],
    [2, 4],
  ],
  // The pcapng case goes through the JavaScript reader and pcapng output: steered in process_batch, merged frame by frame.
  ...['frontends-and-policies', 'sctp-udp-nanosecond', 'cooked-pcapng'].map((c) => caseInput(c, CASES)),
  // A capture taken on a node, whose replies reach their flows only by the node's masquerade tuples (below).
  caseInput('node-masquerade', join(PROJECT_ROOT, 'test', 'fixtures')),
];

describe('replay --workers', () => {
  for (const [name, trace, args, counts] of inputs) {
    it(`gives ${name} the single worker's verdicts, output and summary`, async () => {
      const single = await run(trace, args, 1, name);
      if (name !== 'sample' && name !== 'cooked-pcapng') expect(single.verdicts).toContain('"snat":true');
      for (const workers of counts) {
        const sharded = await run(trace, args, workers, name);
        expect(sharded.verdicts).toBe(single.verdicts);
        expect(Buffer.compare(sharded.out, single.out)).toBe(0);
        expect(sharded.summary).toEqual(single.summary);
        // Every worker had a share of the work.
        const shares = sharded
          .perWorker!.match(/decided ([\d, ]+) packets/)![1]
          .split(', ')
          .map(Number);
        expect(shares).toHaveLength(workers);
        for (const share of shares) expect(share).toBeGreaterThan(0);
      }
    }, 60_000);
  }

  it("node-masquerade's hairpin flow has its client on another worker than the address the node masqueraded it with", () => {
    // README, --workers: a client's worker is its client hash modulo the 64 classes, modulo N. The hairpin flow's
    // client is the pod 10.244.0.5; its replies come to 10.244.0.1 (the node's veth address), where the rule for an
    // unknown destination would send them.
    const worker = (ip: string, n: number) => (clientHash(Uint8Array.from(ip.split('.').map(Number))) % 64) % n;
    expect(worker('10.244.0.5', 2)).not.toBe(worker('10.244.0.1', 2));
  });

  it('merges frames for a pcapng output (written by this thread, not as whole records) alike', async () => {
    const [, trace, args] = inputs[1];
    const single = await run(trace, args, 1, 'pcapng-out', 'pcapng');
    const sharded = await run(trace, args, 2, 'pcapng-out', 'pcapng');
    expect(sharded.verdicts).toBe(single.verdicts);
    expect(Buffer.compare(sharded.out, single.out)).toBe(0);
    expect(single.out.readUInt32LE(0)).toBe(0x0a0d0d0a);
  }, 60_000);

  it('sends ICMP errors and later fragments to the worker of their flow, masqueraded ones included', async () => {
    // Closed-loop traffic from 24 pod and 24 external clients, built with one datapath as the oracle:
    // a DNS request, its reply and an ICMP error about it from the backend; a masqueraded NodePort SYN,
    // the backend's SYN-ACK, an ICMP error about each from the far side; a DNS request in three fragments.
    const svc = makeService(
      'default',
      'web',
      VIP,
      [
        { name: 'http', port: 80, targetPort: 8080, nodePort: 30080 },
        { name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 },
      ],
      { type: 'NodePort' },
    );
    const { compiled, dp } = await program(
      [resolvedService(svc, [endpoints([['10.244.2.5', 8080, 'node-b']]), endpoints([['10.244.0.5', 5353, 'node-a']])])],
      {
        node: 'node-a',
        nodes: [makeNode('node-a', NODE_IP)],
        clusterCIDRs: ['10.244.0.0/16'],
      },
    );
    const frames: Uint8Array[] = [];
    const send = (frame: Uint8Array) => {
      frames.push(frame);
      return runFrames(dp, [frame], [1_700_000_000 + frames.length * 0.001])[0].out;
    };
    for (let k = 1; k <= 24; k++) {
      const pod = `10.244.9.${k}`;
      const request = send(udp(pod, 4000 + k, VIP, 53));
      send(answer(request));
      send(icmpError('10.244.0.5', pod, request));
      const syn = send(tcp(`172.16.${k}.1`, 5000 + k, NODE_IP, 30080, ['SYN']));
      const synAck = send(answer(syn));
      send(icmpError('10.0.0.1', NODE_IP, syn));
      send(icmpError(`172.16.${k}.1`, NODE_IP, synAck));
      for (const f of udpFragments(pod, 6000 + k, VIP, 53, k)) send(f);
    }
    const trace = join(tmp, 'related.pcap');
    const w = createPcapWriter(trace, { linktype: 1, nanosecond: true });
    frames.forEach((f, i) => w.write(1_700_000_000, (i + 1) * 1_000_000, f));
    w.close();

    const single = await replay(trace, compiled, await loadProgram(compiled), {
      out: join(tmp, 'related-1.pcap'),
      verdicts: join(tmp, 'related-1.jsonl'),
    });
    const sharded = await replaySharded(trace, compiled, {
      workers: 2,
      out: join(tmp, 'related-2.pcap'),
      verdicts: join(tmp, 'related-2.jsonl'),
    });
    expect(sharded.result.packets).toBe(single.packets);
    const verdicts = readFileSync(join(tmp, 'related-1.jsonl'), 'utf8');
    expect(readFileSync(join(tmp, 'related-2.jsonl'), 'utf8')).toBe(verdicts);
    expect(Buffer.compare(readFileSync(join(tmp, 'related-2.pcap')), readFileSync(join(tmp, 'related-1.pcap')))).toBe(0);
    // Every kind of packet was decided as meant, not merely alike.
    const reasons = verdicts
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).reason as string);
    expect(reasons.filter((r) => r === 'ICMP_RELATED')).toHaveLength(3 * 24);
    expect(reasons.filter((r) => r === 'REPLY')).toHaveLength(2 * 24);
    expect(reasons.filter((r) => r === 'SERVICE')).toHaveLength(5 * 24); // request, SYN, three fragments
    const shares = sharded.result.notes.find((n) => n.includes('workers decided'))!.match(/decided (\d+), (\d+) packets/)!;
    expect(Number(shares[1])).toBeGreaterThan(0);
    expect(Number(shares[2])).toBeGreaterThan(0);
  }, 60_000);

  it("ends the workers' batches at the same packets when large frames fill the frame area first", async () => {
    const svc = makeService('default', 'dns', VIP, [{ name: 'dns', port: 53, protocol: 'UDP', targetPort: 5353 }]);
    const { compiled } = await program([resolvedService(svc, [endpoints([['10.244.0.5', 5353, 'node-a']])])], {
      node: 'node-a',
      nodes: [makeNode('node-a', NODE_IP)],
    });
    // 9000-byte frames: the 16 MiB frame area holds fewer than the 4096 frames a batch may have.
    const trace = join(tmp, 'jumbo.pcap');
    const w = createPcapWriter(trace, { linktype: 1 });
    for (let k = 0; k < 5000; k++)
      w.write(1_700_000_000, k * 1000, udp(`10.244.${8 + (k >> 8)}.${k & 255}`, 4000, VIP, 53, { payload: new Uint8Array(8950) }));
    w.close();
    const single = await replay(trace, compiled, await loadProgram(compiled), { verdicts: join(tmp, 'jumbo-1.jsonl') });
    const sharded = await replaySharded(trace, compiled, { workers: 2, verdicts: join(tmp, 'jumbo-2.jsonl') });
    expect([sharded.result.packets, single.packets]).toEqual([5000, 5000]);
    expect(readFileSync(join(tmp, 'jumbo-2.jsonl'), 'utf8')).toBe(readFileSync(join(tmp, 'jumbo-1.jsonl'), 'utf8'));
  }, 60_000);

  it('refuses a worker count the masquerade ports cannot be shared by', async () => {
    const [, trace, args] = inputs[1];
    const r = await cli(['replay', trace, ...args, '--workers', '4']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'svcpath: --workers: 4 workers need at least 1024 SNAT ports to share, one class of 256 or more each; the range 40000-40999 has 1000',
    );
    const three = await cli(['replay', trace, ...args, '--workers', '3']);
    expect(three.code).toBe(1);
    expect(three.stderr).toBe('svcpath: --workers: 3: must be a power of two up to 64, as clients are spread over 64 classes');
  });
});
