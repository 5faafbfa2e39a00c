// The datapath's decisions and rewrites, checked against the independent
// frame decoder and full checksum recomputation of traces/frames.ts.
import { describe, expect, it } from 'vitest';
import { FRAME_DESC, VERDICTS, REASONS } from '../control/compile/layout.js';
import type { Datapath } from '../control/runtime/datapath.js';
import { buildFrame, decodeFrame, verifyChecksums } from '../traces/frames.js';
import { endpoints, makeService, program, resolvedService, runFrames, tcp, udp } from './helpers.js';

const VIP = '10.96.0.10';
const CLIENT = '10.244.9.9';

async function webService(nodeOf: string[] = ['node-a', 'node-b', 'node-b']) {
  const svc = makeService('default', 'web', VIP, [
    { name: 'http', port: 80, targetPort: 8080 },
    { name: 'dns', port: 53, protocol: 'UDP' },
  ]);
  const eps = nodeOf.map((n, i): [string, number, string] => [`10.244.${i + 1}.5`, 8080, n]);
  const dnsEps = nodeOf.map((n, i): [string, number, string] => [`10.244.${i + 1}.5`, 5353, n]);
  return program([resolvedService(svc, [endpoints(eps), endpoints(dnsEps)])], { serviceClusterIPRanges: ['10.96.0.0/12'] });
}

describe('DNAT of service traffic', () => {
  it('sends a SYN to a backend, rewrites destination and checksums, and names service and backend', async () => {
    const { dp, compiled } = await webService();
    const [r] = runFrames(dp, [tcp(CLIENT, 40000, VIP, 80, ['SYN'])]);
    expect(r.reason).toBe('SERVICE');
    const backend = compiled.backends[r.backendId - 1];
    expect(compiled.services[r.serviceId - 1].name).toBe('default/web:http');
    const d = decodeFrame(r.out);
    expect(d.ipv4!.dst).toBe(backend.ip);
    expect(d.tcp!.dport).toBe(8080);
    expect(d.ipv4!.src).toBe(CLIENT);
    expect(d.tcp!.sport).toBe(40000);
    expect(r.verdict).toBe(backend.local ? 'REDIRECT' : 'TX');
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
  });

  it('REDIRECTs to backends on the emulated node and TXes to the others', async () => {
    const { dp, compiled } = await webService();
    const frames = Array.from({ length: 200 }, (_, i) => tcp(CLIENT, 20000 + i, VIP, 80, ['SYN']));
    const results = runFrames(dp, frames);
    const seen = new Set<string>();
    for (const r of results) {
      const b = compiled.backends[r.backendId - 1];
      expect(r.verdict).toBe(b.nodeName === 'node-a' ? 'REDIRECT' : 'TX');
      seen.add(r.verdict);
    }
    expect(seen).toEqual(new Set(['REDIRECT', 'TX']));
  });

  it('keeps a zero UDP checksum zero and fixes up others', async () => {
    const { dp } = await webService();
    const [zero, summed] = runFrames(dp, [udp(CLIENT, 5000, VIP, 53, {}, true), udp(CLIENT, 5001, VIP, 53)]);
    expect(zero.reason).toBe('SERVICE');
    expect(decodeFrame(zero.out).udp!.checksum).toBe(0);
    expect(decodeFrame(zero.out).udp!.dport).toBe(5353);
    expect(verifyChecksums(zero.out)).toMatchObject({ ipv4: true, l4: 'zero' });
    expect(verifyChecksums(summed.out)).toMatchObject({ ipv4: true, l4: true });
  });

  it('parses one or two VLAN tags and IPv4 options', async () => {
    const { dp } = await webService();
    const frames = [
      tcp(CLIENT, 40001, VIP, 80, ['SYN'], { vlans: [100] }),
      tcp(CLIENT, 40002, VIP, 80, ['SYN'], { vlans: [{ vid: 10, tpid: 0x88a8 }, 20] }),
      buildFrame({
        srcMac: '02:00:00:00:00:01',
        dstMac: '02:00:00:00:00:02',
        ipv4: { src: CLIENT, dst: VIP, options: [0x94, 0x04, 0, 0] },
        l4: { kind: 'tcp', sport: 40003, dport: 80, flags: ['SYN'] },
      }).slice(),
    ];
    for (const r of runFrames(dp, frames)) {
      expect(r.reason).toBe('SERVICE');
      expect(decodeFrame(r.out).tcp!.dport).toBe(8080);
      expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
    }
  });

  it('preserves a checksum that was already wrong, rather than repairing it', async () => {
    const { dp } = await webService();
    const frame = tcp(CLIENT, 40004, VIP, 80, ['SYN']);
    frame[14 + 20 + 16] ^= 0x5a; // corrupt the TCP checksum
    const [r] = runFrames(dp, [frame]);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: false });
  });

  it('passes what is not for a service, rejects unserved cluster IP ports, drops unallocated service IPs', async () => {
    const { dp } = await webService();
    const arp = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: 'ff:ff:ff:ff:ff:ff',
      ethertype: 0x0806,
      payload: new Uint8Array(28),
    }).slice();
    const fragment = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: CLIENT, dst: VIP, fragOffset: 100, protocol: 6 },
      l4: { kind: 'raw', protocol: 6 },
      payload: new Uint8Array(16),
    }).slice();
    const ping = (dst: string) =>
      buildFrame({
        srcMac: '02:00:00:00:00:01',
        dstMac: '02:00:00:00:00:02',
        ipv4: { src: CLIENT, dst },
        l4: { kind: 'icmp', type: 8 },
      }).slice();
    const unreachable = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: CLIENT, dst: VIP },
      l4: { kind: 'icmp', type: 3, code: 1 },
      payload: new Uint8Array(28),
    }).slice();
    const results = runFrames(dp, [
      tcp(CLIENT, 40000, '10.96.0.99', 80, ['SYN']), // inside the service range, no such cluster IP
      tcp(CLIENT, 40000, VIP, 81, ['SYN']), // a port the cluster IP does not serve
      ping(VIP),
      unreachable, // never answer an ICMP error with one
      tcp(CLIENT, 40000, '10.1.2.3', 80, ['SYN']), // not a service address at all
      ping('10.1.2.3'),
      arp,
      fragment,
    ]);
    expect(results.map((r) => `${r.verdict} ${r.reason}`)).toEqual([
      'DROP UNALLOCATED_IP',
      'TX UNSERVED_PORT',
      'TX UNSERVED_PORT',
      'DROP UNSERVED_PORT',
      'PASS NO_SERVICE',
      'PASS NO_SERVICE',
      'PASS NON_IP',
      'DROP FRAGMENT_UNTRACKED',
    ]);
    expect(results[4].out).toEqual(tcp(CLIENT, 40000, '10.1.2.3', 80, ['SYN']));
    const icmp = decodeFrame(results[1].out);
    expect([icmp.ipv4!.src, icmp.icmp!.type, icmp.icmp!.code, icmp.icmp!.embedded!.tcp!.dport]).toEqual([VIP, 3, 3, 81]);
    expect(verifyChecksums(results[2].out)).toMatchObject({ ipv4: true, l4: true });
  });
});

describe('conntrack', () => {
  it('keeps every packet of a flow on its backend and reverse-NATs the replies', async () => {
    const { dp, compiled } = await webService();
    const [syn] = runFrames(dp, [tcp(CLIENT, 41000, VIP, 80, ['SYN'])]);
    const b = compiled.backends[syn.backendId - 1];
    const synAck = tcp(b.ip, 8080, CLIENT, 41000, ['SYN', 'ACK']);
    const rest = runFrames(dp, [
      synAck,
      tcp(CLIENT, 41000, VIP, 80, ['ACK']),
      tcp(CLIENT, 41000, VIP, 80, ['ACK', 'PSH'], { payload: new Uint8Array(100).fill(7) }),
      tcp(b.ip, 8080, CLIENT, 41000, ['ACK', 'PSH'], { payload: new Uint8Array(300).fill(9) }),
    ]);
    expect(rest.map((r) => r.reason)).toEqual(['REPLY', 'SERVICE', 'SERVICE', 'REPLY']);
    for (const r of rest) {
      expect(r.backendId).toBe(syn.backendId);
      expect(r.serviceId).toBe(syn.serviceId);
      expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
    }
    const reply = decodeFrame(rest[0].out);
    expect([reply.ipv4!.src, reply.tcp!.sport, reply.ipv4!.dst, reply.tcp!.dport]).toEqual([VIP, 80, CLIENT, 41000]);
    expect(rest[0].verdict).toBe('TX');
    const stats = dp.map('serviceStats').at(syn.serviceId)!;
    expect(stats).toMatchObject({ flows: 1, packets: 5 });
    expect(dp.map('backendStats').at(syn.backendId)).toMatchObject({ flows: 1, packets: 5 });
  });

  it('does not reverse-NAT packets from a backend that has no tracked flow to that client', async () => {
    const { dp, compiled } = await webService();
    const b = compiled.backends[0];
    const [r] = runFrames(dp, [tcp(b.ip, 8080, CLIENT, 41001, ['SYN', 'ACK'])]);
    expect(`${r.verdict} ${r.reason}`).toBe('PASS NO_SERVICE');
  });

  it('keeps established flows on their backend when the Maglev table changes, new flows follow the table', async () => {
    const { dp, compiled } = await webService();
    const svc = compiled.services[0];
    const flows = Array.from({ length: 300 }, (_, i) => tcp(CLIENT, 30000 + i, VIP, 80, ['SYN']));
    const first = runFrames(dp, flows);
    // Control plane: every slot now points at backend 1 (the others stay in the backend map).
    const table = new Uint32Array(compiled.maglevTableSize).fill(svc.cluster.backendIds[0]);
    dp.map('maglev').updateRaw(new Uint8Array(new Uint32Array([4 * svc.id]).buffer), new Uint8Array(table.buffer));
    const again = runFrames(
      dp,
      flows.map((_, i) => tcp(CLIENT, 30000 + i, VIP, 80, ['ACK'])),
    );
    expect(again.map((r) => r.backendId)).toEqual(first.map((r) => r.backendId));
    const fresh = runFrames(dp, [tcp(CLIENT, 50000, VIP, 80, ['SYN'])]);
    expect(fresh[0].backendId).toBe(svc.cluster.backendIds[0]);
  });

  it('chooses again when the tracked backend was removed', async () => {
    const { dp, compiled } = await webService();
    const svc = compiled.services[0];
    const [syn] = runFrames(dp, [tcp(CLIENT, 42000, VIP, 80, ['SYN'])]);
    // Control plane: the backend goes away, and the Maglev table with it.
    const remaining = svc.cluster.backendIds.find((id) => id !== syn.backendId)!;
    const table = new Uint32Array(compiled.maglevTableSize).fill(remaining);
    dp.map('maglev').updateRaw(new Uint8Array(new Uint32Array([4 * svc.id]).buffer), new Uint8Array(table.buffer));
    dp.map('lb4Backends').delete({ value: syn.backendId });
    const [next] = runFrames(dp, [tcp(CLIENT, 42000, VIP, 80, ['ACK'])]);
    expect(`${next.verdict} ${next.reason}`).toMatch(/^(TX|REDIRECT) SERVICE$/);
    expect(next.backendId).toBe(remaining);
  });

  it('says STATE_MISMATCH when the maps contradict each other instead of guessing', async () => {
    const { dp } = await webService();
    const [syn] = runFrames(dp, [tcp(CLIENT, 42001, VIP, 80, ['SYN'])]);
    dp.map('lb4Backends').delete({ value: syn.backendId }); // Maglev still names it
    const [next] = runFrames(dp, [tcp(CLIENT, 42001, VIP, 80, ['ACK'])]);
    expect(`${next.verdict} ${next.reason}`).toBe('DROP STATE_MISMATCH');
  });

  it('forgets flows after their timeout on the packet clock, and a SYN after FIN starts over', async () => {
    const { dp } = await webService();
    const t0 = 1_800_000_000;
    const dns = (sport: number) => udp(CLIENT, sport, VIP, 53);
    runFrames(dp, [dns(6000)], [t0]);
    runFrames(dp, [dns(6000)], [t0 + 29]); // within the 30 s UDP timeout
    runFrames(dp, [dns(6000)], [t0 + 29 + 31]); // expired: a new flow
    const svcId = 2;
    expect(dp.map('serviceStats').at(svcId)).toMatchObject({ flows: 2, packets: 3 });

    runFrames(dp, [tcp(CLIENT, 43000, VIP, 80, ['SYN'])], [t0]);
    runFrames(dp, [tcp(CLIENT, 43000, VIP, 80, ['FIN', 'ACK'])], [t0 + 1]);
    runFrames(dp, [tcp(CLIENT, 43000, VIP, 80, ['SYN'])], [t0 + 2]);
    expect(dp.map('serviceStats').at(1)).toMatchObject({ flows: 2, packets: 3 });
    // Captures can step back in time a little: that never expires a flow.
    runFrames(dp, [tcp(CLIENT, 43000, VIP, 80, ['ACK'])], [t0 - 100]);
    expect(dp.map('serviceStats').at(1)).toMatchObject({ flows: 2, packets: 4 });
  });

  it('evicts a flow not used lately when the conntrack map is full', async () => {
    const svc = makeService('default', 'web', VIP, [{ port: 80 }]);
    const { dp } = await program([resolvedService(svc, [endpoints([['10.244.1.5', 8080]])])], { ctEntries: 4 });
    runFrames(dp, [tcp(CLIENT, 1, VIP, 80, ['SYN']), tcp(CLIENT, 2, VIP, 80, ['SYN'])]); // 4 entries
    runFrames(dp, [tcp(CLIENT, 1, VIP, 80, ['ACK'])]); // flow 1 used last
    runFrames(dp, [tcp(CLIENT, 3, VIP, 80, ['SYN'])]); // evicts flow 2's two entries
    const ports = [...dp.map('ct4').entries()].map(([k]) => `${k.dir}:${k.dir === 0 ? k.sport : k.dport}`).sort();
    expect(ports).toEqual(['0:1', '0:3', '1:1', '1:3']);
  });
});

describe('REJECT for a service without endpoints', () => {
  it('answers with an ICMP port unreachable from the VIP, quoting the packet', async () => {
    const svc = makeService('default', 'empty', VIP, [{ port: 80 }]);
    const { dp, compiled } = await program([resolvedService(svc, [[]])]);
    const syn = tcp(CLIENT, 44000, VIP, 80, ['SYN'], { vlans: [7] });
    const [r] = runFrames(dp, [syn]);
    expect(`${r.verdict} ${r.reason}`).toBe('TX NO_ENDPOINTS');
    expect(compiled.services[r.serviceId - 1].name).toBe('default/empty:80');
    expect(r.backendId).toBe(0);
    const d = decodeFrame(r.out);
    expect(d.eth!.vlans.map((v) => v.vid)).toEqual([7]);
    expect(d.eth!.dst).toBe('02:00:00:00:00:01');
    expect([d.ipv4!.src, d.ipv4!.dst, d.ipv4!.protocol]).toEqual([VIP, CLIENT, 1]);
    expect([d.icmp!.type, d.icmp!.code]).toEqual([3, 3]);
    expect(d.icmp!.embedded!.ipv4!.dst).toBe(VIP);
    expect(d.icmp!.embedded!.tcp).toMatchObject({ sport: 44000, dport: 80 });
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
    // The quote is the original datagram, byte for byte.
    expect(r.out.subarray(18 + 28)).toEqual(syn.subarray(18));
  });

  it('quotes at most a 576-byte error', async () => {
    const svc = makeService('default', 'empty', VIP, [{ port: 80, protocol: 'UDP' }]);
    const { dp } = await program([resolvedService(svc, [[]])]);
    const [r] = runFrames(dp, [udp(CLIENT, 1234, VIP, 80, { payload: new Uint8Array(1400).fill(3) })]);
    expect(r.out.length).toBe(14 + 576);
    expect(verifyChecksums(r.out)).toMatchObject({ ipv4: true, l4: true });
  });
});

/** Puts one frame at the very end of linear memory and runs it: a read past it traps. */
function runAtMemoryEnd(
  dp: Datapath,
  frame: Uint8Array,
  wireLen: number,
): { verdict: string; reason: string; outside: boolean; changed: boolean } {
  const batch = dp.createBatch(1, 0);
  // Past everything reserved there must be room for the frame and the 4096 bytes checked before it: a page more if not.
  if (dp.memory.byteLength - dp.exports.memory_top() <= 4096 + frame.length) dp.exports.memory.grow(1);
  const mem = new Uint8Array(dp.memory);
  const addr = mem.length - frame.length;
  expect(addr).toBeGreaterThan(batch.descBase + FRAME_DESC.size + 4096);
  const before = mem.slice(addr - 4096, addr);
  mem.set(frame, addr);
  const v = new DataView(dp.memory);
  const d = batch.descBase;
  v.setUint32(d, addr, true);
  v.setUint32(d + 4, frame.length, true);
  v.setUint32(d + 8, wireLen, true);
  v.setUint32(d + 12, frame.length, true); // no tailroom
  v.setUint32(d + 16, 1_800_000_000, true);
  v.setUint32(d + 40, 1, true); // Ethernet
  dp.exports.process_batch(d, 1);
  return {
    verdict: VERDICTS[mem[d + 28]],
    reason: REASONS[mem[d + 29]],
    outside: !mem.slice(addr - 4096, addr).every((b, i) => b === before[i]),
    changed: !mem.slice(addr).every((b, i) => b === frame[i]),
  };
}

describe('bounds: short and lying frames', () => {
  const valid = (backendIp: string) => [
    tcp(CLIENT, 45000, VIP, 80, ['SYN'], { payload: new Uint8Array(10) }),
    udp(CLIENT, 45001, VIP, 53),
    tcp(CLIENT, 45002, VIP, 80, ['SYN'], { vlans: [{ vid: 1, tpid: 0x88a8 }, 2] }),
    buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: CLIENT, dst: VIP, options: [1, 1, 1, 0, 0x94, 4, 0, 0] },
      l4: { kind: 'udp', sport: 45003, dport: 53 },
      payload: new Uint8Array(3),
    }).slice(),
    tcp(backendIp, 8080, CLIENT, 45000, ['SYN', 'ACK']), // a reply to the flow opened below
  ];

  it('every prefix of every valid frame is DROPped or ABORTed without touching memory outside it', async () => {
    const { dp, compiled } = await webService();
    const [syn] = runFrames(dp, [tcp(CLIENT, 45000, VIP, 80, ['SYN'])]);
    for (const frame of valid(compiled.backends[syn.backendId - 1].ip)) {
      for (let len = 0; len < frame.length; len++) {
        const r = runAtMemoryEnd(dp, frame.subarray(0, len), len);
        expect(['DROP', 'ABORTED'], `prefix ${len} of ${frame.length}`).toContain(r.verdict);
        expect(r.outside).toBe(false);
        expect(r.changed, `prefix ${len} changed`).toBe(false);
      }
      const whole = runAtMemoryEnd(dp, frame, frame.length);
      expect(['TX', 'REDIRECT']).toContain(whole.verdict);
      expect(whole.outside).toBe(false);
    }
  });

  it('a capture cut by its snaplen is processed when the headers are there, ABORTED (TRUNCATED) when not', async () => {
    const { dp } = await webService();
    const frame = tcp(CLIENT, 46000, VIP, 80, ['SYN', 'PSH', 'ACK'], { payload: new Uint8Array(200).fill(1) });
    for (let len = 0; len < frame.length; len++) {
      const r = runAtMemoryEnd(dp, frame.subarray(0, len), frame.length);
      expect(r.outside).toBe(false);
      if (len < 14 + 20 + 20) expect(`${r.verdict} ${r.reason}`, `caplen ${len}`).toBe('ABORTED TRUNCATED');
      else expect(r.reason, `caplen ${len}`).toBe('SERVICE');
    }
  });

  it('IPv6: a sound header and extension chain is not for a service; a broken one is MALFORMED or TRUNCATED', async () => {
    const { dp } = await webService();
    // Ethernet + IPv6 (hop-by-hop 8 bytes, then UDP 8 bytes + 4 payload), checksum irrelevant here.
    const v6 = (payloadLen: number, hbhLen = 0) => {
      const f = new Uint8Array(14 + 40 + 8 + 12);
      f.set([0x86, 0xdd], 12);
      f[14] = 0x60;
      f[18] = payloadLen >> 8;
      f[19] = payloadLen & 0xff;
      f[20] = 0; // next header: hop-by-hop
      f[21] = 64;
      f[22 + 15] = 1; // src ::1 … dst ::2 (values do not matter)
      f[38 + 15] = 2;
      f[54] = 17; // hop-by-hop: next header UDP
      f[55] = hbhLen; // length in 8-byte units beyond the first 8
      f.set([0, 53, 0, 53, 0, 12, 0, 0], 62);
      return f;
    };
    const results = runFrames(dp, [v6(20), v6(200), v6(20, 5), v6(4)]);
    expect(results.map((r) => `${r.verdict} ${r.reason}`)).toEqual([
      'PASS NO_SERVICE',
      'DROP MALFORMED',
      'DROP MALFORMED',
      'DROP MALFORMED',
    ]);
    for (let len = 0; len < 74; len++) {
      const r = runAtMemoryEnd(dp, v6(20).subarray(0, len), len);
      expect(['DROP', 'ABORTED'], `prefix ${len}`).toContain(r.verdict);
      expect(r.outside).toBe(false);
    }
    expect(runAtMemoryEnd(dp, v6(20).subarray(0, 56), 74).reason).toBe('TRUNCATED');
  });

  it('headers that contradict each other are MALFORMED', async () => {
    const { dp } = await webService();
    const base = tcp(CLIENT, 47000, VIP, 80, ['SYN']);
    const mutate = (f: (b: Uint8Array) => void) => {
      const b = base.slice();
      f(b);
      return b;
    };
    const frames = [
      mutate((b) => {
        b[14] = 0x65;
      }), // IP version 6 under an IPv4 ethertype
      mutate((b) => {
        b[14] = 0x44;
      }), // IHL 4
      mutate((b) => {
        b[14] = 0x4f;
      }), // IHL 15: options past the segment
      mutate((b) => {
        b[16] = 0;
        b[17] = 0;
      }), // total length 0
      mutate((b) => {
        b[16] = 0xff;
      }), // total length beyond the frame
      mutate((b) => {
        b[14 + 20 + 12] = 0xf0;
      }), // TCP data offset 60 > segment
      mutate((b) => {
        b[14 + 20 + 12] = 0x40;
      }), // TCP data offset 16 < 20
    ];
    for (const [i, r] of runFrames(dp, frames).entries()) expect(`${r.verdict} ${r.reason}`, `case ${i}`).toBe('DROP MALFORMED');
  });

  it('rejects without tailroom as ABORTED NO_ROOM instead of writing past the frame', async () => {
    const svc = makeService('default', 'empty', VIP, [{ port: 80 }]);
    const { dp } = await program([resolvedService(svc, [[]])]);
    const r = runAtMemoryEnd(dp, tcp(CLIENT, 48000, VIP, 80, ['SYN']), 54);
    expect(`${r.verdict} ${r.reason}`).toBe('ABORTED NO_ROOM');
    expect(r.outside).toBe(false);
  });
});
