// Every real capture of test/corpus through a whole replay: each gets its
// reviewed outcome — a verdict for every packet, or a stop at the first record
// svcpath cannot take, naming it — and never a crash.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { replay } from '../control/runtime/replay.js';
import { buildSummary, readCounters } from '../control/runtime/summary.js';
import { openCapture } from '../traces/pcap.js';
import { endpoints, makeService, program, resolvedService } from './helpers.js';

const CORPUS = resolve(PROJECT_ROOT, 'test', 'corpus');

/** Where each file stops, if it does. */
const STOPS: Record<string, RegExp> = {
  'aoe-oobr-1.pcap': /record 1 \(offset 24\): caplen/,
};

/**
 * Each file's outcome with no Service of its own in the way, reviewed by eye
 * against INDEX.txt: "VERDICT REASON count", in the summary's order.
 */
const OUTCOMES: Record<string, string[]> = {
  'DnsPackets.pcap': ['PASS NO_SERVICE 464'], // IPv4 and IPv6 DNS, no Service of theirs
  'VlanPackets.pcap': ['PASS NO_SERVICE 20', 'PASS NON_IP 6'], // QinQ ICMP; CDP is not IP
  'aoe-oobr-1.pcap': [],
  'bigtcp-ipv4.pcap': ['DROP MALFORMED 1'], // IPv4 total length 0 (BIG TCP)
  'dns_tcp.pcap': ['PASS NO_SERVICE 11'],
  'dns_udp_2.pcap': ['PASS NO_SERVICE 2'], // the second cut by snaplen, headers intact
  'empty.pcapng': [],
  'frag_with_padding.pcap': ['PASS NO_SERVICE 1', 'PASS FRAGMENT 7'], // later fragments of no service flow
  'ip4_bad_fragment.pcap': ['PASS NON_IP 1'], // MPLS
  'ip4_fragments.pcap': ['PASS NO_SERVICE 12', 'PASS FRAGMENT 41'],
  'ip6_fragments.pcap': ['PASS NO_SERVICE 4', 'PASS FRAGMENT 32'], // 4 datagrams: first fragments, then later ones of no service flow
  'ipv4_tcp_http_xml.pcap': ['PASS NO_SERVICE 1'],
  'ipv6_frag6_negative_len.pcap': ['DROP MALFORMED 1'], // fragment header beyond the payload length
  'ldp-common-session.pcap': ['PASS NO_SERVICE 22'],
  'lisp_invalid_length.pcap': ['PASS NO_SERVICE 1'],
  'many_interfaces-1.pcapng': ['PASS NO_SERVICE 64'], // Ethernet, BSD loopback
  'mptcp-v0.pcap': ['PASS NO_SERVICE 264'],
  'nanosecs_big_endian.pcap': ['PASS NO_SERVICE 10'],
  'pcapng-example.pcapng': ['PASS NO_SERVICE 104', 'PASS OUTGOING 55'], // Ethernet and Linux cooked interfaces; 55 cooked frames of packet type 4
  'pptp.pcap': ['PASS NO_SERVICE 23'],
  'tcp-handshake-nano.pcap': ['PASS NO_SERVICE 1', 'PASS OUTGOING 2'], // Linux cooked: the SYN and the ACK were sent (packet type 4)
  'test202.pcapng': ['PASS NO_SERVICE 8'],
  'test902.pcapng': ['PASS NO_SERVICE 1'],
  'time_2106_overflow.pcapng': ['PASS NO_SERVICE 1'],
  'timestamp_invalid_nano.pcap': ['PASS NO_SERVICE 1', 'PASS OUTGOING 2'], // Linux cooked: two frames of packet type 4
};

/** A fresh datapath with one Service, on an address the corpus does not use. */
function datapath() {
  const svc = makeService('default', 'dns', '10.96.0.53', [{ name: 'dns', port: 53, protocol: 'UDP' }]);
  return program([resolvedService(svc, [endpoints([['10.244.0.2', 53]])])]);
}

describe('the corpus through a replay', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'svcpath-corpus-'));
  beforeAll(() => {
    if (!existsSync(CORPUS)) throw new Error(`capture corpus not found at ${CORPUS}`);
  });

  const files = existsSync(CORPUS)
    ? readdirSync(CORPUS)
        .filter((f) => /\.pcap(ng)?$/.test(f))
        .sort()
    : [];
  it('has files', () => expect(files.length).toBeGreaterThan(20));

  it.each(files)('%s', async (file) => {
    const { dp, compiled } = await datapath();
    const result = await replay(join(CORPUS, file), compiled, dp, { verdicts: join(tmp, `${file}.jsonl`) });
    expect(OUTCOMES[file], `${file} has no reviewed outcome`).toBeDefined();
    const outcomes = buildSummary(result, compiled, readCounters(dp, compiled), []).byVerdictAndReason.map(
      (o) => `${o.verdict} ${o.reason} ${o.packets}`,
    );
    expect(outcomes).toEqual(OUTCOMES[file]);
    const stop = STOPS[file];
    if (stop) {
      expect(result.stoppedAt?.error).toMatch(stop);
    } else {
      expect(result.stoppedAt).toBeUndefined();
      let records = 0;
      for (const _ of openCapture(join(CORPUS, file)).records()) records++;
      expect(result.packets).toBe(records);
    }
  });
});
