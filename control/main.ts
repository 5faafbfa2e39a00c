/**
 * svcpath's command line. User mistakes (InputError) print one line naming
 * the file, record or object and field, and exit 1; anything else is a bug
 * and prints its stack.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import ipaddr from 'ipaddr.js';
import { loadClusterState, resolveServices } from './cluster/index.js';
import { compile } from './compiler.js';
import { InputError, inputError } from './errors.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, isPrime } from './maglev.js';
import { DEFAULT_CT_ENTRIES, loadProgram } from './program.js';
import { replay } from './replay.js';
import { buildSummary, formatSummary } from './summary.js';

const HELP = `svcpath — replay captured packets through an eBPF/XDP-style Kubernetes Service datapath

Usage:
  svcpath replay <trace.pcap|trace.pcapng> --cluster <file-or-dir> [--cluster ...] [options]
  svcpath --help

replay options:
  --cluster PATH                   Service, EndpointSlice, Node and KubeProxyConfiguration
                                   manifests (YAML or JSON, files or directories, kubectl List dumps)
  --node NAME                      the Node whose datapath is emulated (optional with one Node)
  --out OUT.pcap                   write the TX and REDIRECT frames, rewritten, in input order
  --verdicts OUT.jsonl             one JSON verdict per input packet
  --summary OUT.json               the summary as JSON
  --service-cluster-ip-range CIDR[,CIDR]   where cluster IPs live (default 10.96.0.0/12)
  --service-node-port-range A-B    NodePort range (default 30000-32767)
  --cluster-cidr CIDR[,CIDR]       the pod network (overrides KubeProxyConfiguration clusterCIDR)
  --nodeport-addresses LIST        CIDRs or "primary" (overrides KubeProxyConfiguration)
  --masquerade-all                 SNAT all service traffic
  --seed N                         seed of the Maglev hashes (default 0)
  --maglev-table-size M            Maglev lookup table size, a prime (default ${DEFAULT_MAGLEV_TABLE_SIZE})
  --ct-entries N                   conntrack map size, two entries per flow (default ${DEFAULT_CT_ENTRIES})

Exit status: 0 on success, 1 on bad input (the message names file, record or object, and field).`;

function fail(message: string): never {
  throw new InputError(message);
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) fail(`${flag}: "${text}" is not a whole number`);
  const n = Number(text);
  if (n < min || n > max) fail(`${flag}: ${n} is outside ${min}..${max}`);
  return n;
}

/** A comma-separated list of CIDRs with at most one per address family. */
function parseCidrList(flag: string, text: string): string[] {
  const cidrs = text.split(',').map((c) => c.trim()).filter(Boolean);
  if (cidrs.length === 0) fail(`${flag}: empty`);
  const families = new Set<string>();
  for (const c of cidrs) {
    let kind: string;
    try {
      kind = ipaddr.parseCIDR(c)[0].kind();
    } catch {
      fail(`${flag}: "${c}" is not a CIDR`);
    }
    if (families.has(kind)) fail(`${flag}: more than one ${kind === 'ipv4' ? 'IPv4' : 'IPv6'} CIDR`);
    families.add(kind);
  }
  return cidrs;
}

function parsePortRange(flag: string, text: string): [number, number] {
  const m = /^(\d+)-(\d+)$/.exec(text.trim());
  if (!m) fail(`${flag}: "${text}" is not a range A-B`);
  const lo = parseInteger(flag, m[1], 1, 65535);
  const hi = parseInteger(flag, m[2], 1, 65535);
  if (lo >= hi) fail(`${flag}: ${lo}-${hi} is empty`);
  return [lo, hi];
}

function parseNodePortAddresses(flag: string, text: string): string[] {
  const items = text.split(',').map((c) => c.trim()).filter(Boolean);
  for (const item of items) {
    if (item === 'primary') continue;
    try {
      ipaddr.parseCIDR(item);
    } catch {
      fail(`${flag}: "${item}" is neither a CIDR nor "primary"`);
    }
  }
  return items;
}

/** A progress bar on stderr, only when it is a terminal. */
function progressBar(): { update(done: number, total: number, packets: number): void; end(): void } {
  if (!process.stderr.isTTY) return { update() {}, end() {} };
  let last = -1;
  return {
    update(done, total, packets) {
      const pct = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
      if (pct === last) return;
      last = pct;
      const width = 30;
      const full = Math.round((pct / 100) * width);
      process.stderr.write(`\r[${'#'.repeat(full)}${' '.repeat(width - full)}] ${String(pct).padStart(3)}%  ${packets} packets`);
    },
    end() {
      if (last >= 0) process.stderr.write('\r\x1b[K');
    },
  };
}

async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      cluster: { type: 'string', multiple: true },
      node: { type: 'string' },
      out: { type: 'string' },
      verdicts: { type: 'string' },
      summary: { type: 'string' },
      'service-cluster-ip-range': { type: 'string' },
      'service-node-port-range': { type: 'string' },
      'cluster-cidr': { type: 'string' },
      'nodeport-addresses': { type: 'string' },
      'masquerade-all': { type: 'boolean' },
      seed: { type: 'string' },
      'maglev-table-size': { type: 'string' },
      'ct-entries': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) fail(`replay: expected one trace file, got ${positionals.length}`);
  if (!values.cluster?.length) fail('replay: --cluster is required');
  const trace = positionals[0];
  const seed = values.seed === undefined ? 0 : parseInteger('--seed', values.seed, 0, 0xffffffff);
  const maglevTableSize = values['maglev-table-size'] === undefined
    ? DEFAULT_MAGLEV_TABLE_SIZE
    : parseInteger('--maglev-table-size', values['maglev-table-size'], 2, 1 << 20);
  if (!isPrime(maglevTableSize)) fail(`--maglev-table-size: ${maglevTableSize} is not prime`);
  const ctEntries = values['ct-entries'] === undefined ? DEFAULT_CT_ENTRIES : parseInteger('--ct-entries', values['ct-entries'], 2, 1 << 26);
  const serviceRanges = values['service-cluster-ip-range'] === undefined
    ? undefined : parseCidrList('--service-cluster-ip-range', values['service-cluster-ip-range']);
  // Validated now; NodePorts, the pod network and masquerading are decided
  // by the datapath once it emulates them (noted in the summary until then).
  const pending: string[] = [];
  if (values['service-node-port-range'] !== undefined) {
    parsePortRange('--service-node-port-range', values['service-node-port-range']);
    pending.push('--service-node-port-range');
  }
  if (values['cluster-cidr'] !== undefined) {
    parseCidrList('--cluster-cidr', values['cluster-cidr']);
    pending.push('--cluster-cidr');
  }
  if (values['nodeport-addresses'] !== undefined) {
    parseNodePortAddresses('--nodeport-addresses', values['nodeport-addresses']);
    pending.push('--nodeport-addresses');
  }
  if (values['masquerade-all']) pending.push('--masquerade-all');

  const state = loadClusterState(values.cluster, { serviceClusterIPRanges: serviceRanges });
  const resolved = resolveServices(state);
  const compiled = compile(state, resolved.services, { node: values.node, seed, maglevTableSize });
  const dp = await loadProgram(compiled, { ctEntries });
  const bar = progressBar();
  const result = replay(trace, compiled, dp, {
    out: values.out,
    verdicts: values.verdicts,
    onProgress: (done, total, packets) => bar.update(done, total, packets),
  });
  bar.end();
  const notes = [
    ...state.notes,
    ...resolved.notes,
    ...compiled.notes,
    ...pending.map((f) => `${f} is validated but has no effect yet: only ClusterIP frontends are emulated so far`),
  ];
  const summary = buildSummary(result, compiled, dp, notes);
  if (values.summary) {
    try {
      writeFileSync(values.summary, JSON.stringify(summary, null, 2) + '\n');
    } catch (e) {
      throw inputError([values.summary], `cannot write: ${(e as Error).message}`);
    }
  }
  console.log(formatSummary(summary));
  if (result.stoppedAt) {
    console.error(`svcpath: ${result.stoppedAt.error}`);
    return 1;
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        console.log(HELP);
        return command === undefined ? 1 : 0;
      case 'replay':
        return await replayCommand(rest);
      default:
        fail(`unknown command "${command}" (try svcpath --help)`);
    }
  } catch (e) {
    if (e instanceof InputError) {
      console.error(`svcpath: ${e.message}`);
      return 1;
    }
    // parseArgs reports unknown or malformed flags with a code: a user mistake too.
    const code = (e as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      console.error(`svcpath: ${(e as Error).message.replace(/\s*\n\s*/g, ' ')}`);
      return 1;
    }
    throw e;
  }
}
