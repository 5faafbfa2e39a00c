// The reference model (model/) against the WebAssembly datapath: generated
// clusters, traffic and cluster changes, frame by frame, must be decided
// alike to the last output byte and flowChange, and each flow to a Service
// sent only where the oracle (traces/synth/differential.ts allowedBackends,
// checkBackend) allows under the spec in force. `npm run
// fuzz:model` runs the same property long.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { flowHash4, murmur3 } from '../control/common/murmur3.js';
import { FLOW_CHANGES, LINKTYPES } from '../control/compile/layout.js';
import { checksumOf, onesComplementSum, updateChecksum } from '../model/checksum.js';
import { agreementProperty, compileCluster, type ClusterSpec, type Tallies } from '../traces/synth/differential.js';
import { flowHashKey } from '../model/flow-hash.js';
import { OutsideModelScope, ReferenceDatapath } from '../model/reference-datapath.js';
import { buildFrame } from '../traces/frames.js';
import { tcp } from './helpers.js';

const SEED = 20260127;

describe('the reference model', () => {
  it('decides generated clusters, traffic and cluster changes exactly as the datapath does', async () => {
    const tallies = {
      outcomes: new Map(),
      oracle: new Map(),
      flowChanges: new Map(),
      changes: new Map(),
      copies: new Map(),
    } satisfies Tallies;
    const { outcomes, oracle: oracleRules } = tallies;
    await fc.assert(agreementProperty(tallies), { seed: SEED, numRuns: 400 });
    // The runs reach every decision the model covers, not only the easy ones.
    for (const outcome of [
      'TX SERVICE',
      'REDIRECT SERVICE',
      'TX REPLY',
      'TX NO_ENDPOINTS',
      'DROP NO_LOCAL_ENDPOINTS',
      'DROP SOURCE_RANGE',
      'TX UNSERVED_PORT',
      'DROP UNALLOCATED_IP',
      'PASS NO_SERVICE',
      'PASS NON_IP',
      'PASS FRAGMENT',
      'DROP FRAGMENT_UNTRACKED',
    ]) {
      expect(outcomes.get(outcome) ?? 0, outcome).toBeGreaterThan(0);
    }
    // The oracle checked flows under every topology rule: hints narrowing the set, each reason to ignore
    // them, the Local set whatever the hints, and the terminating fallback.
    for (const rule of [
      'zone hints leaving some out: SERVICE',
      'node hints leaving some out: SERVICE',
      'hints ignored: a ready endpoint has no zone hint: SERVICE',
      'hints ignored: this node has no zone: SERVICE',
      'hints ignored: none for this node or its zone: SERVICE',
      "a Local policy: this node's endpoints: SERVICE",
      "a Local policy: this node's endpoints: NO_LOCAL_ENDPOINTS",
      'no ready endpoint: SERVICE',
      'no ready endpoint: NO_ENDPOINTS',
    ]) {
      expect(oracleRules.get(rule) ?? 0, rule).toBeGreaterThan(0);
    }
    // Every kind of cluster change was synced, by more than one of the control plane's paths (slices only, or
    // the state compiled again), and changed flows in every way the two semantics have; established flows were
    // kept on backends new flows may no longer reach.
    const changes = [...tallies.changes.keys()];
    for (const op of ['conditions', 'removeEndpoint', 'addEndpoint', 'removeAllEndpoints', 'deleteService', 'restoreService']) {
      expect(changes.filter((c) => c.startsWith(`${op} (`)).length, op).toBeGreaterThan(0);
    }
    expect(new Set(changes.map((c) => c.slice(c.indexOf('(')))).size).toBeGreaterThan(1);
    for (const kind of FLOW_CHANGES) expect(tallies.flowChanges.get(kind) ?? 0, kind).toBeGreaterThan(0);
    for (const rule of [
      'a flow kept on its backend after a change: SERVICE',
      'a flow kept on its backend after a change took it: STALE_BACKEND',
    ]) {
      expect(oracleRules.get(rule) ?? 0, rule).toBeGreaterThan(0);
    }
    // The node's copies met the steer map's entries a change added (those it keeps for a frontend a change
    // took are rarer: a long `npm run fuzz:model` run reaches them).
    expect(tallies.copies.get('to a backend a change added') ?? 0).toBeGreaterThan(0);
  });

  it('hashes a flow as MurmurHash3 of its words, which for IPv4 is flowHash4 (the IPv6 hash rests on it)', () => {
    const address = fc.uint8Array({ minLength: 4, maxLength: 4 });
    const port = fc.integer({ min: 0, max: 0xffff });
    fc.assert(
      fc.property(
        fc.nat(),
        address,
        address,
        port,
        port,
        fc.constantFrom(6, 17),
        (seed, s, d, sport, dport, proto) =>
          murmur3(flowHashKey(s, d, sport, dport, proto), seed) === flowHash4(seed, s, d, sport, dport, proto),
      ),
      { seed: SEED },
    );
  });

  it('updates checksums incrementally to what a full recomputation gives', () => {
    const words = fc.uint8Array({ minLength: 2, maxLength: 64 }).filter((b) => b.length % 2 === 0);
    fc.assert(
      fc.property(words, fc.nat(), fc.uint8Array({ minLength: 4, maxLength: 4 }), (data, at, replacement) => {
        const offset = 2 * (at % Math.max(1, data.length / 2 - 1));
        const after = data.slice();
        after.set(replacement.subarray(0, Math.min(4, after.length - offset)), offset);
        const before = checksumOf(onesComplementSum(data));
        return (
          updateChecksum(before, data.subarray(offset, offset + 4), after.subarray(offset, offset + 4)) ===
          checksumOf(onesComplementSum(after))
        );
      }),
      { seed: SEED },
    );
  });

  it('refuses what is outside its scope instead of guessing', () => {
    const cluster: ClusterSpec = {
      seed: 0,
      maglevTableSize: 7,
      podNetwork: 'dual',
      masqueradeAll: false,
      snatPortRange: [40000, 40010],
      conntrack: { tcpEstablishedTimeout: 60, tcpCloseWaitTimeout: 10, udpTimeout: 5, udpStreamTimeout: 30 },
      services: [],
    };
    const model = new ReferenceDatapath(compileCluster(cluster));
    const at =
      (frame: Uint8Array, opts: Partial<{ wireLen: number; linktype: number }> = {}) =>
      () =>
        model.process(frame, { wireLen: frame.length, tsSec: 1_800_000_000, tsNsec: 0, linktype: LINKTYPES.ETHERNET, ...opts });
    const syn = tcp('10.244.1.5', 40000, '10.96.0.10', 80, ['SYN']);
    expect(at(syn, { linktype: LINKTYPES.RAW })).toThrow(OutsideModelScope);
    expect(at(syn, { wireLen: syn.length + 10 })).toThrow(OutsideModelScope);
    expect(at(syn.subarray(0, 30), { wireLen: 30 })).toThrow(OutsideModelScope);
    const hopByHop = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv6: { src: 'fd00:244:1::5', dst: 'fd00:96::10', extensions: [{ type: 'hop-by-hop' }] },
      l4: { kind: 'udp', sport: 1, dport: 53 },
    }).slice();
    expect(at(hopByHop)).toThrow(/outside the model's scope: IPv6 next header 0/);
    const icmpError = buildFrame({
      srcMac: '02:00:00:00:00:01',
      dstMac: '02:00:00:00:00:02',
      ipv4: { src: '10.244.1.5', dst: '10.96.0.10' },
      l4: { kind: 'icmp', type: 3, code: 3 },
      payload: new Uint8Array(28),
    }).slice();
    expect(at(icmpError)).toThrow(/ICMP errors/);
  });
});
