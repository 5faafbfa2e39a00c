// svcpath trace: the datapath's own account of a NodePort flow with
// masquerading and of its reply — every lookup, the Maglev slot, the rewrite;
// on every link type; flows selected with their replies; selectors that
// choose nothing said so.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { decodeFrame, toLinkType, verifyChecksums, type DecodedFrame } from '../traces/frames.js';
import { createPcapWriter, openCapture } from '../traces/pcap.js';
import { cli } from './helpers.js';
import { readWithPcapParser } from './pcap-parser.js';

const CASE = join(PROJECT_ROOT, 'test', 'cases', 'frontends-and-policies');
const ARGS = [
  '--cluster',
  join(CASE, 'cluster.yaml'),
  '--node',
  'node-a',
  '--snat-port-range',
  '40000-40999',
  '--service-cluster-ip-range',
  '10.96.0.0/12,fd00:96::/108',
];

async function svcpath(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const { code, stdout, stderr } = await cli(args);
  return { code, out: stdout, err: stderr };
}

interface Step {
  step: string;
  map?: string;
  key?: Record<string, unknown>;
  value?: Record<string, unknown> | null;
  slot?: number;
  backend?: string;
}
interface Traced {
  packet: number;
  linktype: number;
  headers: string;
  steps: Step[];
  rewrite: Array<[string, string, string]>;
  checksumsValid: boolean | null;
  verdict: string;
  reason: string;
  service: string | null;
  backend: string | null;
  snat: boolean;
}

describe('svcpath trace', () => {
  it('shows every lookup and rewrite of a masqueraded NodePort flow and of its reply', async () => {
    // The external client's SYN to the NodePort, and the backend's answer right after it.
    const records = Array.from(openCapture(join(CASE, 'input.pcap')).records(), (r) => ({ ...r, data: r.data.slice() }));
    const syn = records.find((r) => {
      const d = decodeFrame(r.data);
      return d.ipv4?.src === '172.16.3.4' && d.tcp?.dport === 30080;
    })!;
    const { code, out } = await svcpath([
      'trace',
      join(CASE, 'input.pcap'),
      ...ARGS,
      '--packet',
      String(syn.n),
      '--packet',
      String(syn.n + 1),
      '--json',
    ]);
    expect(code).toBe(0);
    const [request, reply] = JSON.parse(out) as Traced[];

    expect([request.reason, request.snat]).toEqual(['SERVICE', true]);
    expect(['TX', 'REDIRECT']).toContain(request.verdict);
    // The frontend is found; it is a NodePort, so conntrack is asked first whether this is a tracked reply.
    // The Service has ClientIP affinity, and this client used it before: the affinity record
    // names the backend, its table membership is checked, and Maglev is not asked.
    const lookups = request.steps.filter((s) => s.step === 'lookup').map((s) => `${s.map} ${s.value ? 'hit' : 'miss'}`);
    expect(lookups).toEqual([
      'lb4_services hit',
      'ct4 miss',
      'ct4 miss',
      'node_ips4 miss',
      'lb4_affinity hit',
      'lb_members hit',
      'lb4_backends hit',
    ]);
    expect(request.steps.some((s) => s.step === 'maglev')).toBe(false);
    const backend = request.steps.find((s) => s.map === 'lb4_backends')!.value!;
    expect(request.steps.find((s) => s.map === 'lb4_affinity')!.value).toMatchObject({
      backendId: request.steps.find((s) => s.map === 'lb4_backends')!.key!.value,
    });
    expect(request.steps.at(-1)).toEqual({ step: 'verdict', verdict: request.verdict, reason: 'SERVICE' });
    const changed = Object.fromEntries(request.rewrite.map(([f, a, b]) => [f, [a, b]]));
    expect(changed['ipv4.dst']).toEqual(['"192.168.0.10"', JSON.stringify(backend.address)]);
    expect(changed['ipv4.src']).toEqual(['"172.16.3.4"', '"192.168.0.10"']);
    expect(changed['tcp.dport']).toEqual(['30080', '8080']);
    expect(Object.keys(changed)).toEqual(expect.arrayContaining(['ipv4.checksum', 'tcp.sport', 'tcp.checksum']));
    expect(request.checksumsValid).toBe(true);

    expect([reply.verdict, reply.reason, reply.snat]).toEqual(['TX', 'REPLY', true]);
    const replyLookups = reply.steps.filter((s) => s.step === 'lookup').map((s) => `${s.map} ${s.value ? 'hit' : 'miss'}`);
    expect(replyLookups).toEqual(['lb4_services miss', 'ct4 hit', 'lb4_reverse_nat hit', 'snat4 hit', 'ct4 hit']);
    const snat = reply.steps.find((s) => s.map === 'snat4')!;
    expect(snat.value).toMatchObject({ address: '172.16.3.4' });
    const back = Object.fromEntries(reply.rewrite.map(([f, a, b]) => [f, [a, b]]));
    expect(back['ipv4.dst']![1]).toBe('"172.16.3.4"');
    expect(back['tcp.sport']![1]).toBe('30080');
    expect(reply.checksumsValid).toBe(true);
  });

  it('prints a readable account, and selects by flow and by Service', async () => {
    const text = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--flow', '172.16.3.4:41018']);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^packet \d+ {2}\S+ {2}TCP 172\.16\.3\.4:41018 > 192\.168\.0\.10:30080 flags 0x2\n/);
    const byService = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--service', 'default/local', '--json']);
    const traced = JSON.parse(byService.out) as Array<{ service: string }>;
    expect(traced.length).toBeGreaterThan(0);
    expect(traced.every((t) => t.service === 'default/local:http')).toBe(true);
    const first = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--packet', '1']);
    // A cluster-IP frontend: no reply goes to a cluster IP, so the flow's own entry is the only conntrack lookup.
    expect(first.out).toMatch(
      /^packet 1 {2}\S+ {2}TCP 10\.244\.0\.77:\d+ > 10\.96\.0\.10:80 flags 0x2\n {2}lookup lb4_services +address 10\.96\.0\.10 {2}port 80 .*\n {2}lookup ct4 +saddr 10\.244\.0\.77 .* dir 0 {2}-> {2}miss\n/,
    );
    expect(first.out).toMatch(/\n {2}maglev table \d+ slot \d+ {2}-> {2}backend \d+ \(10\.244\.\d+\.\d+:8080\)\n/);
    expect(first.out).toMatch(/\n {2}verdict (TX|REDIRECT) SERVICE default\/lb:http 10\.244\.\d+\.\d+:8080$/);
  });
});

const tmp = mkdtempSync(join(tmpdir(), 'svcpath-trace-'));

/** Every record of a capture, its data copied. */
function records(path: string) {
  return Array.from(openCapture(path).records(), (r) => ({ ...r, data: r.data.slice() }));
}

/** What the header line says of the IP and L4 headers, written from decodeFrame's account of an Ethernet frame. */
function expectedHeader(d: DecodedFrame): string {
  const ip = (d.ipv4 ?? d.ipv6)!;
  const at = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
  if (d.tcp) return `TCP ${at(ip.src, d.tcp.sport)} > ${at(ip.dst, d.tcp.dport)} flags 0x${d.tcp.flags.toString(16)}`;
  if (d.udp) return `UDP ${at(ip.src, d.udp.sport)} > ${at(ip.dst, d.udp.dport)}`;
  throw new Error('no TCP or UDP');
}

/** An Ethernet frame around the packet a cooked v1 frame carries: its protocol field is the EtherType. */
function ethernetOfCooked(cooked: Uint8Array): Uint8Array {
  return new Uint8Array([...new Uint8Array(12), cooked[14]!, cooked[15]!, ...cooked.subarray(16)]);
}

describe('svcpath trace on every link type', () => {
  it('decodes a Linux cooked capture: the cooked header, then IP and L4 as from Ethernet, the rewrite and its checksums', async () => {
    const dir = join(PROJECT_ROOT, 'test', 'cases', 'cooked-pcapng');
    const input = records(join(dir, 'input.pcapng'));
    expect(input[0].linktype).toBe(113);
    const chosen = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    const r = await svcpath([
      'trace',
      join(dir, 'input.pcapng'),
      '--cluster',
      join(dir, 'cluster.yaml'),
      '--node',
      'node-a',
      ...chosen.flatMap((n) => ['--packet', String(n)]),
      '--json',
    ]);
    expect([r.code, r.err]).toEqual([0, '']);
    const traced = JSON.parse(r.out) as Traced[];
    expect(traced.map((t) => t.packet)).toEqual(chosen);
    for (const t of traced) {
      const frame = input[t.packet - 1].data;
      const sender = [...frame.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':');
      // tcpdump -i any: a frame to this host (packet type 0), and the copy the node sent on (4).
      const direction = { 0: 'In', 4: 'Out' }[(frame[0]! << 8) | frame[1]!];
      expect(t.linktype).toBe(113);
      expect(t.headers, `packet ${t.packet}`).toBe(
        `Linux cooked v1 ${direction} from ${sender}  ${expectedHeader(decodeFrame(ethernetOfCooked(frame)))}`,
      );
    }
    const rewritten = traced.filter((t) => t.rewrite.length > 0);
    expect(rewritten.length).toBeGreaterThan(0);
    for (const t of rewritten) {
      // What a rewrite or a REJECT's ICMP error changes: never the cooked header.
      const fields = t.rewrite.map(([field]) => field);
      expect(
        fields.every((f) => /^(ipv4|ipv6|tcp|udp|icmp|icmpv6)\.|^payload(Offset|Length)$/.test(f)),
        fields.join(' '),
      ).toBe(true);
      expect(t.checksumsValid).toBe(true);
    }
  });

  it('decodes a raw IP capture as the Ethernet one it was made from: same packets chosen, same steps, same rewrite', async () => {
    const ethernet = join(CASE, 'input.pcap');
    const raw = join(tmp, 'raw.pcap');
    const w = createPcapWriter(raw, { linktype: 101 });
    for (const rec of records(ethernet)) w.write(rec.tsSec, rec.tsNsec, toLinkType(rec.data, 101), rec.origlen - 14);
    w.close();
    const flows = ['--flow', '10.96.0.10:80', '--flow', '[fd00:96:0::10]:80'];
    const viaEthernet = await svcpath(['trace', ethernet, ...ARGS, ...flows, '--json']);
    const viaRaw = await svcpath(['trace', raw, ...ARGS, ...flows, '--json']);
    expect([viaEthernet.code, viaRaw.code, viaRaw.err]).toEqual([0, 0, '']);
    const e = JSON.parse(viaEthernet.out) as Traced[];
    const w6 = JSON.parse(viaRaw.out) as Traced[];
    expect(e.some((t) => t.headers.includes('[fd00:96::10]:80'))).toBe(true);
    expect(w6.map((t) => t.packet)).toEqual(e.map((t) => t.packet));
    w6.forEach((t, i) => {
      const { linktype, headers, rewrite, ...decision } = t;
      const { linktype: ethernetLinktype, headers: ethernetHeaders, rewrite: ethernetRewrite, ...ethernetDecision } = e[i];
      expect([linktype, ethernetLinktype]).toEqual([101, 1]);
      expect(headers).toBe(`raw IP  ${ethernetHeaders}`);
      expect(decision).toEqual(ethernetDecision);
      expect(rewrite).toEqual(ethernetRewrite.filter(([field]) => !field.startsWith('eth.')));
    });
  });
});

describe('svcpath trace on checksums a capture holds unfilled', () => {
  it('tells a checksum invalid as captured (offload) from one the rewrite broke', async () => {
    // The case's first packet to 10.96.0.10:80, its TCP checksum spoilt as checksum offload leaves it in a capture.
    const first = records(join(CASE, 'input.pcap')).find((r) => decodeFrame(r.data).ipv4?.dst === '10.96.0.10')!;
    const spoilt = first.data.slice();
    const tcpChecksum = 14 + (spoilt[14] & 0xf) * 4 + 16;
    spoilt[tcpChecksum] ^= 0x5a;
    expect(verifyChecksums(spoilt).l4).toBe(false);
    const capture = join(tmp, 'offload.pcap');
    const w = createPcapWriter(capture, { linktype: 1 });
    w.write(first.tsSec, first.tsNsec, first.data, first.origlen);
    w.write(first.tsSec + 1, first.tsNsec, spoilt, first.origlen);
    w.close();
    const r = await svcpath(['trace', capture, ...ARGS]);
    expect(r.code).toBe(0);
    const verdicts = r.out.split('\n').filter((l) => l.startsWith('  checksums '));
    expect(verdicts).toEqual([
      '  checksums valid',
      '  checksums invalid, as they were in the capture (checksum offload: the host had not filled them in yet); kept as they were',
    ]);
    const json = JSON.parse((await svcpath(['trace', capture, ...ARGS, '--json'])).out) as Array<
      Traced & { capturedChecksumsValid: boolean }
    >;
    expect(json.map((t) => [t.checksumsValid, t.capturedChecksumsValid])).toEqual([
      [true, true],
      [false, false],
    ]);
  });
});

describe('svcpath trace on what it cannot decode, and on SCTP', () => {
  it('says a link type it does not read is one, rather than guess at it', async () => {
    const capture = join(tmp, 'wifi.pcap');
    const w = createPcapWriter(capture, { linktype: 147 });
    w.write(1_800_000_000, 0, new Uint8Array(60));
    w.close();
    const r = await svcpath(['trace', capture, ...ARGS, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject([
      {
        packet: 1,
        linktype: 147,
        headers: 'link type 147  not decoded (a link type svcpath does not read), 60 bytes',
        rewrite: [],
        checksumsValid: null,
        verdict: 'PASS',
        reason: 'UNSUPPORTED_LINKTYPE',
      },
    ]);
  });

  it("reads SCTP's ports from its common header: --flow chooses an SCTP NodePort's flows and their replies", async () => {
    const dir = join(PROJECT_ROOT, 'test', 'cases', 'sctp-udp-nanosecond');
    const capture = join(dir, 'input.pcap');
    const sctpEnds = (frame: Uint8Array) => {
      const d = decodeFrame(frame);
      const ip = d.ipv4!;
      const port = (at: number) => (frame[d.payloadOffset + at]! << 8) | frame[d.payloadOffset + at + 1]!;
      return ip.protocol === 132 ? { src: `${ip.src}:${port(0)}`, dst: `${ip.dst}:${port(2)}` } : undefined;
    };
    const nodePort = '192.168.0.10:30868';
    const verdicts = join(tmp, 'sctp.jsonl');
    const out = join(tmp, 'sctp.pcap');
    const args = ['--cluster', join(dir, 'cluster.yaml'), '--node', 'node-a'];
    expect((await cli(['replay', capture, ...args, '--verdicts', verdicts, '--out', out])).code).toBe(0);
    const lines = readFileSync(verdicts, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { n: number; verdict: string; reason: string });
    // A nanosecond pcap, which pcap-parser does not read.
    const sent = records(out);
    const sentBy = lines.filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT').map((v) => v.n);
    const requests = records(capture)
      .filter((rec) => sctpEnds(rec.data)?.dst === nodePort)
      .map((rec) => rec.n);
    const replies = sentBy.filter((n, k) => lines[n - 1].reason === 'REPLY' && sctpEnds(sent[k].data)?.src === nodePort);
    expect(requests.length).toBeGreaterThan(0);
    expect(replies.length).toBe(requests.length);

    const r = await svcpath(['trace', capture, ...args, '--flow', nodePort, '--json']);
    expect([r.code, r.err]).toEqual([0, '']);
    const traced = JSON.parse(r.out) as Traced[];
    expect(traced.map((t) => t.packet)).toEqual([...requests, ...replies].sort((a, b) => a - b));
    for (const t of traced) {
      const { src, dst } = sctpEnds(records(capture)[t.packet - 1].data)!;
      expect(t.headers).toBe(`SCTP ${src} > ${dst}`);
    }
  });
});

describe('svcpath trace --flow', () => {
  /** What a plain replay did: per packet, its verdict, and the frame it sent (TX, REDIRECT). */
  async function replayed() {
    const verdicts = join(tmp, 'flows.jsonl');
    const out = join(tmp, 'flows.pcap');
    expect((await cli(['replay', join(CASE, 'input.pcap'), ...ARGS, '--verdicts', verdicts, '--out', out])).code).toBe(0);
    const lines = readFileSync(verdicts, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { n: number; verdict: string; reason: string });
    const sent = await readWithPcapParser(out);
    const output = new Map(
      lines.filter((v) => v.verdict === 'TX' || v.verdict === 'REDIRECT').map((v, k) => [v.n, new Uint8Array(sent[k].data)]),
    );
    return { lines, output, input: records(join(CASE, 'input.pcap')) };
  }
  const ends = (frame: Uint8Array): { src: string; dst: string } | undefined => {
    const d = decodeFrame(frame);
    const ip = d.ipv4 ?? d.ipv6;
    const l4 = d.tcp ?? d.udp;
    return ip && l4 ? { src: `${ip.src}:${l4.sport}`, dst: `${ip.dst}:${l4.dport}` } : undefined;
  };

  it('chooses the flows sent to a frontend and their replies, whose source the datapath restored to it', async () => {
    const { lines, output, input } = await replayed();
    const vip = '10.96.0.10:80';
    const requests = input.filter((r) => ends(r.data)?.dst === vip).map((r) => r.n);
    const replies = lines.filter((v) => v.reason === 'REPLY' && output.has(v.n) && ends(output.get(v.n)!)?.src === vip).map((v) => v.n);
    // The replies come from backends: nothing in them, as captured, names the frontend.
    expect(replies.length).toBeGreaterThan(0);
    for (const n of replies) expect([ends(input[n - 1].data)?.src, ends(input[n - 1].data)?.dst]).not.toContain(vip);
    const r = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--flow', vip, '--json']);
    expect([r.code, r.err]).toEqual([0, '']);
    expect((JSON.parse(r.out) as Traced[]).map((t) => t.packet)).toEqual([...requests, ...replies].sort((a, b) => a - b));
  });

  it("chooses the flows DNATed to a backend and that backend's replies", async () => {
    const { output, input } = await replayed();
    const backend = '10.244.1.5:8080';
    const fromIt = input.filter((r) => ends(r.data)?.src === backend).map((r) => r.n);
    const toIt = [...output].filter(([, frame]) => ends(frame)?.dst === backend).map(([n]) => n);
    expect(toIt.length).toBeGreaterThan(0);
    const r = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, '--flow', backend, '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.out) as Traced[]).map((t) => t.packet)).toEqual([...new Set([...fromIt, ...toIt])].sort((a, b) => a - b));
  });
});

describe('svcpath trace selectors that choose nothing', () => {
  it('says so for each, one line each, exit 1, and still prints what the others chose', async () => {
    const packets = records(join(CASE, 'input.pcap')).length;
    const r = await svcpath([
      'trace',
      join(CASE, 'input.pcap'),
      ...ARGS,
      '--packet',
      '1',
      '--packet',
      String(packets + 1),
      '--flow',
      '10.96.0.99:80',
      '--service',
      'default/lcoal',
      '--service',
      'default/lb:99',
      '--service',
      'default/empty',
      '--json',
    ]);
    expect(r.code).toBe(1);
    const traced = JSON.parse(r.out) as Traced[];
    // default/empty exists, and the capture has packets for it: they are chosen too.
    expect(traced[0].packet).toBe(1);
    expect(traced.slice(1).every((t) => t.service?.startsWith('default/empty:'))).toBe(true);
    expect(traced.length).toBeGreaterThan(1);
    expect(r.err.split('\n')).toEqual([
      `svcpath: trace: --packet ${packets + 1}: the capture has ${packets} packets`,
      'svcpath: trace: --flow 10.96.0.99:80: no packet from or to it, as captured or as rewritten',
      'svcpath: trace: --service default/lcoal: no Service default/lcoal in the cluster state (did you mean default/local?)',
      'svcpath: trace: --service default/lb:99: Service default/lb has no port 99 (its ports: http, dns, sig)',
    ]);
  });

  it('refuses a selector that is not one, before replaying', async () => {
    for (const [flag, value, line] of [
      ['--flow', '10.96.0.10', 'svcpath: --flow: "10.96.0.10" is not IP:PORT (or [IPv6]:PORT)'],
      ['--flow', 'fd00::1:80', 'svcpath: --flow: "fd00::1:80" is not IP:PORT (or [IPv6]:PORT)'],
      ['--service', 'web', 'svcpath: --service: "web" is not NS/NAME or NS/NAME:PORT'],
    ]) {
      const r = await svcpath(['trace', join(CASE, 'input.pcap'), ...ARGS, flag, value]);
      expect([r.code, r.out, r.err]).toEqual([1, '', line]);
    }
  });
});
