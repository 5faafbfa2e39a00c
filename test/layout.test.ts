// The control plane's struct and map tables against the constants the
// WebAssembly datapath exports: both sides of the boundary must agree.
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { Datapath, MIN_FRAME_CAPACITY } from '../control/runtime/datapath.js';
import {
  BPF_MAP_TYPE,
  CFG_F,
  CONFIG,
  CT6_TUPLE,
  FRAG4_KEY,
  FRAG4_PORTS,
  FRAG6_KEY,
  LB6_AFFINITY_KEY,
  LB6_BACKEND,
  LB6_KEY,
  LB6_REVNAT,
  LB6_SRC_RANGE_KEY,
  NODE_IP6_KEY,
  SNAT6_ORIGIN,
  CT4_TUPLE,
  CT_ENTRY,
  CT_F,
  FLOW_COUNTER,
  FRAME_DESC,
  LB4_AFFINITY_KEY,
  LB4_BACKEND,
  LB4_KEY,
  LB4_REVNAT,
  LB4_SERVICE,
  LB4_SRC_RANGE_KEY,
  LB_AFFINITY,
  LB_MEMBER_KEY,
  MAPS,
  METRIC_ENTRIES,
  NODE_IP4_KEY,
  PRESENCE,
  LINKTYPES,
  REASONS,
  SIZE_CONSTANTS,
  TRACE_RECORD,
  TRACE_KEY_OFFSET,
  TRACE_VALUE_OFFSET,
  TRACE_KIND,
  DESC_F_TRACE,
  DESC_F_NEW_FLOW,
  SNAT4_ORIGIN,
  SVC_F,
  TRAFFIC_COUNTER,
  VERDICTS,
  fieldSize,
  type Struct,
  DESC_F_OTHER_SHARD,
  PCAP_F,
  STEER_CLASS,
  STEER_F,
  STEER_KEY,
  WALK,
  REWRITE_KEY,
  REWRITE,
  RW_F,
  CONFORMANCE_COUNTER,
  CONFORM,
  DESC_F_INBOUND,
  DESC_F_OUTBOUND,
  ARRIVAL,
  NODE_MASQ_KEY,
  NODE_MASQ,
  FLOW_CHANGE_COUNTER,
  FLOW_CHANGE_FLAGS,
  FLOW_CHANGES,
  dottedQuad,
  encode,
} from '../control/compile/layout.js';

let dp: Datapath;
beforeAll(async () => {
  dp = await Datapath.load();
});

const STRUCTS: Struct[] = [
  CONFIG,
  LB4_KEY,
  LB4_SERVICE,
  LB4_BACKEND,
  LB4_REVNAT,
  CT4_TUPLE,
  CT_ENTRY,
  TRAFFIC_COUNTER,
  FLOW_COUNTER,
  FRAME_DESC,
  LB_MEMBER_KEY,
  LB4_AFFINITY_KEY,
  LB_AFFINITY,
  SNAT4_ORIGIN,
  LB4_SRC_RANGE_KEY,
  NODE_IP4_KEY,
  FRAG4_KEY,
  FRAG4_PORTS,
  LB6_KEY,
  LB6_BACKEND,
  LB6_REVNAT,
  CT6_TUPLE,
  SNAT6_ORIGIN,
  LB6_AFFINITY_KEY,
  LB6_SRC_RANGE_KEY,
  NODE_IP6_KEY,
  FRAG6_KEY,
  TRACE_RECORD,
  STEER_KEY,
  STEER_CLASS,
  REWRITE_KEY,
  REWRITE,
  CONFORMANCE_COUNTER,
  ARRIVAL,
  NODE_MASQ_KEY,
  NODE_MASQ,
  FLOW_CHANGE_COUNTER,
];

describe('struct layouts match the datapath', () => {
  for (const s of STRUCTS) {
    it(s.name, () => {
      expect(dp.constant(SIZE_CONSTANTS[s.name] ?? `${s.prefix}_SIZE`)).toBe(s.size);
      for (const f of s.fields) {
        expect(dp.constant(`${s.prefix}_${f.constant}`), `${s.name}.${f.name}`).toBe(f.offset);
        expect(f.offset + fieldSize(f)).toBeLessThanOrEqual(s.size);
      }
      // Fields do not overlap.
      const sorted = [...s.fields].sort((a, b) => a.offset - b.offset);
      for (let i = 1; i < sorted.length; i++) {
        expect(sorted[i].offset).toBeGreaterThanOrEqual(sorted[i - 1].offset + fieldSize(sorted[i - 1]));
      }
    });
  }
});

describe('map ids, types and codes match the datapath', () => {
  it('map ids', () => {
    const ids: Record<string, string> = {
      config: 'MAP_CONFIG',
      lb4Services: 'MAP_LB4_SERVICES',
      lb4Backends: 'MAP_LB4_BACKENDS',
      lb4Revnat: 'MAP_LB4_REVNAT',
      maglev: 'MAP_LB_MAGLEV',
      ct4: 'MAP_CT4',
      metrics: 'MAP_METRICS',
      serviceStats: 'MAP_SERVICE_STATS',
      backendStats: 'MAP_BACKEND_STATS',
      lbMembers: 'MAP_LB_MEMBERS',
      lb4Affinity: 'MAP_LB4_AFFINITY',
      snat4: 'MAP_SNAT4',
      lb4SourceRanges: 'MAP_LB4_SOURCE_RANGES',
      nodeIps4: 'MAP_NODE_IPS4',
      frag4: 'MAP_FRAG4',
      lb6Services: 'MAP_LB6_SERVICES',
      lb6Backends: 'MAP_LB6_BACKENDS',
      lb6Revnat: 'MAP_LB6_REVNAT',
      ct6: 'MAP_CT6',
      snat6: 'MAP_SNAT6',
      lb6Affinity: 'MAP_LB6_AFFINITY',
      lb6SourceRanges: 'MAP_LB6_SOURCE_RANGES',
      nodeIps6: 'MAP_NODE_IPS6',
      frag6: 'MAP_FRAG6',
      steer: 'MAP_STEER',
      rewrites: 'MAP_REWRITES',
      conformance: 'MAP_CONFORMANCE',
      serviceRanges4: 'MAP_SERVICE_RANGES4',
      serviceRanges6: 'MAP_SERVICE_RANGES6',
      arrivals: 'MAP_ARRIVALS',
      nodeMasq: 'MAP_NODE_MASQ',
      flowChanges: 'MAP_FLOW_CHANGES',
    };
    expect(Object.keys(ids).sort()).toEqual(Object.keys(MAPS).sort());
    for (const [name, constant] of Object.entries(ids)) expect(dp.constant(constant), name).toBe(MAPS[name as keyof typeof MAPS].id);
    expect(dp.constant('MAP_COUNT')).toBe(Object.keys(MAPS).length);
    expect(dp.constant('METRIC_ENTRIES')).toBe(METRIC_ENTRIES);
  });

  it('map types', () => {
    for (const [t, v] of Object.entries(BPF_MAP_TYPE)) expect(dp.constant(`BPF_MAP_TYPE_${t}`)).toBe(v);
  });

  it('flags', () => {
    for (const [name, bit] of Object.entries(SVC_F)) expect(dp.constant(`SVC_F_${name}`), name).toBe(bit);
    for (const [name, bit] of Object.entries(CFG_F)) expect(dp.constant(`CFG_F_${name}`), name).toBe(bit);
    for (const [name, bit] of Object.entries(CT_F)) expect(dp.constant(`CT_F_${name}`), name).toBe(bit);
    expect(dp.constant('PRESENCE_SIZE')).toBe(PRESENCE.size);
  });

  it('trace records', () => {
    expect(dp.constant('TRACE_KEY')).toBe(TRACE_KEY_OFFSET);
    expect(dp.constant('TRACE_VALUE')).toBe(TRACE_VALUE_OFFSET);
    for (const [name, kind] of Object.entries(TRACE_KIND)) expect(dp.constant(`TRACE_${name}`), name).toBe(kind);
    expect(dp.constant('DESC_F_TRACE')).toBe(DESC_F_TRACE);
    expect(dp.constant('DESC_F_NEW_FLOW')).toBe(DESC_F_NEW_FLOW);
  });

  it('zero-copy replay and sharding', () => {
    expect(dp.constant('FRAME_MIN_CAPACITY')).toBe(MIN_FRAME_CAPACITY);
    for (const [name, bit] of Object.entries(PCAP_F)) expect(dp.constant(`PCAP_F_${name}`), name).toBe(bit);
    for (const [name, code] of Object.entries(WALK)) expect(dp.constant(`WALK_${name}`), name).toBe(code);
    for (const [name, bit] of Object.entries(STEER_F)) expect(dp.constant(`STEER_F_${name}`), name).toBe(bit);
    expect(dp.constant('DESC_F_OTHER_SHARD')).toBe(DESC_F_OTHER_SHARD);
  });

  it("capture direction and the comparison with the node's own rewrites", () => {
    expect(dp.constant('DESC_F_INBOUND')).toBe(DESC_F_INBOUND);
    expect(dp.constant('DESC_F_OUTBOUND')).toBe(DESC_F_OUTBOUND);
    for (const [name, bit] of Object.entries(RW_F)) expect(dp.constant(`RW_F_${name}`), name).toBe(bit);
    for (const [name, index] of Object.entries(CONFORM)) expect(dp.constant(`CONFORM_${name}`), name).toBe(index);
    expect(dp.constant('CONFORM_ENTRIES')).toBe(Object.keys(CONFORM).length);
  });

  it('flow changes: the descriptor flags, and the counters by position in FLOW_CHANGES + 1', () => {
    for (const [i, kind] of FLOW_CHANGES.entries()) {
      expect(dp.constant(`DESC_F_${kind}`), kind).toBe(FLOW_CHANGE_FLAGS[kind]);
      // datapath/stats.ts counts a flag at its bit - 4.
      expect(Math.log2(FLOW_CHANGE_FLAGS[kind]) - 4, kind).toBe(i + 1);
    }
    expect(dp.constant('DESC_F_FLOW_CHANGES')).toBe(Object.values(FLOW_CHANGE_FLAGS).reduce((a, b) => a | b));
    expect(dp.constant('FC_ENTRIES')).toBe(FLOW_CHANGES.length + 1);
  });

  it('link types', () => {
    for (const [name, value] of Object.entries(LINKTYPES)) expect(dp.constant(`LINKTYPE_${name}`), name).toBe(value);
  });

  it('verdicts and reasons', () => {
    VERDICTS.forEach((v, i) => expect(dp.constant(`XDP_${v}`), v).toBe(i));
    REASONS.forEach((r, i) => {
      if (r) expect(dp.constant(`REASON_${r}`), r).toBe(i);
    });
  });
});

// encode and the compile read dotted quads by hand (dottedQuad); ipaddr.js is the independent reader.
describe('dotted quads read by hand, against ipaddr.js', () => {
  const ipaddrValue = (ip: string) =>
    ipaddr.IPv4.parse(ip)
      .toByteArray()
      .reduce((v, b) => v * 256 + b, 0);

  it('reads every plain dotted quad as ipaddr.js does', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        expect(dottedQuad(ip)).toBe(ipaddrValue(ip));
      }),
      { numRuns: 2000 },
    );
  });

  it('gives -1 for anything else, which encode leaves to ipaddr.js', () => {
    const addressChars = fc.constantFrom(...'0123456789.:xaf '.split(''));
    fc.assert(
      fc.property(fc.oneof(fc.ipV4Extended(), fc.string({ unit: addressChars, maxLength: 20 })), (ip) => {
        const quad = dottedQuad(ip);
        if (quad !== -1) expect(quad).toBe(ipaddrValue(ip));
        // A plain quad has four decimal parts of 1-3 digits without leading zeros, each below 256.
        const plain = /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(ip) && ip.split('.').every((p) => Number(p) < 256);
        expect(quad !== -1).toBe(plain);
      }),
      { numRuns: 5000 },
    );
    for (const odd of ['010.0.0.1', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1..2.3', '', '::ffff:1.2.3.4']) expect(dottedQuad(odd)).toBe(-1);
  });

  it('encodes IPv4-mapped IPv6 addresses by hand as ipaddr.js does', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV6(), (v4, v6) => {
        for (const ip of [`::ffff:${v4}`, v6]) {
          const bytes = encode(CT6_TUPLE, { saddr: ip });
          const at = CT6_TUPLE.fields.find((f) => f.name === 'saddr')!.offset;
          expect([...bytes.subarray(at, at + 16)]).toEqual(ipaddr.IPv6.parse(ip).toByteArray());
        }
      }),
      { numRuns: 1000 },
    );
  });
});
