/**
 * svcpath's command line. User mistakes (InputError) print one line naming
 * the file, record or object and field, and exit 1; anything else is a bug
 * and prints its stack.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { loadClusterState, resolveServices } from '../cluster/index.js';
import { compile } from '../compile/compiler.js';
import { InputError, inputError, isInputError } from '../common/errors.js';
import { parseCommandArgs } from './args.js';
import { closest, didYouMean } from '../common/suggest.js';
import { checkOutputs, PROJECT_ROOT } from '../common/paths.js';
import { DEFAULT_MAGLEV_TABLE_SIZE, isPrime } from '../compile/maglev.js';
import { DEFAULT_CT_ENTRIES, loadProgram } from '../runtime/loader.js';
import type { ClusterState } from '../cluster/state.js';
import { Interrupted, replay, SIGNAL_EXIT_STATUS, stopOnSignals, type ReplayResult } from '../runtime/replay.js';
import { STDOUT, writeOutputFile } from '../../traces/chunked.js';
import { LINKTYPES } from '../compile/layout.js';
import { formatServicesTable, serviceRows } from './services-table.js';
import { formatEndpoints, type OutputFormat } from './endpoints-output.js';
import { MAX_MAX_ENDPOINTS_PER_SLICE } from '../cluster/endpointslice-controller.js';
import { formatEnv, podEnv } from '../discovery/env.js';
import { clusterZone, formatQuery, formatZone, QUERY_TYPES, resolveQuery, type RecordType } from '../discovery/dns.js';
import { dumpMaps, formatMapDump } from '../runtime/maps-dump.js';
import { diffReplays, formatDiff } from '../runtime/diff.js';
import { formatTraces, traceReplay } from '../runtime/trace.js';
import { findCases, junitReport, runCase, type CaseResult, type PrepareDatapath } from '../runtime/testcases.js';
import { buildSummary, formatSummary, readCounters, type Counters, type Summary } from '../runtime/summary.js';
import { replaySharded } from '../runtime/sharded-replay.js';

const CLUSTER_OPTIONS = `  --cluster PATH                   Service, EndpointSlice, Endpoints, Pod, Node and KubeProxyConfiguration
                                   manifests (YAML or JSON, files or directories, kubectl List dumps)
  --service-cluster-ip-range CIDR[,CIDR]   where cluster IPs live (default: the state's ServiceCIDR
                                   objects; with neither, unknown)
  --service-node-port-range A-B    NodePort range (default 30000-32767)
  --seed N                         seed of cluster IP and NodePort allocation, the Maglev
                                   hashes and masquerade ports (default 0)
  --max-endpoints-per-slice N      endpoints per EndpointSlice derived from Pods (default 100)
  --strict                         what the API server would refuse is an error, not a warning`;

const DATAPATH_OPTIONS = `  --node NAME                      the Node whose datapath is emulated (optional with one Node)
  --cluster-cidr CIDR[,CIDR]       the pod network (overrides KubeProxyConfiguration clusterCIDR)
  --nodeport-addresses LIST        CIDRs or "primary" (overrides KubeProxyConfiguration)
  --masquerade-all                 masquerade all cluster-IP traffic, from pods too
  --masquerade-address IP[,IP]     masquerade source per family (default the node's first InternalIP of each)
  --snat-port-range A-B            masquerade source ports (default 1024-65535)
  --maglev-table-size M            Maglev lookup table size, a prime (default ${DEFAULT_MAGLEV_TABLE_SIZE})
  --ct-entries N                   conntrack map size, two entries per flow (default ${DEFAULT_CT_ENTRIES})`;

const HELP_FOOTER = `  -h, --help                       this help

Exit status: 0 on success, 1 on bad input (the message names file, record or object, and field).`;

/** Each command's help: what `svcpath <command> --help` and `svcpath help <command>` print. */
const COMMAND_HELP = {
  replay: `svcpath replay: replay a capture through the datapath: a verdict per packet, the rewritten frames, a summary

Usage:
  svcpath replay <trace.pcap|trace.pcapng|-> --cluster <file-or-dir> [--cluster ...] [flags]

The capture - is standard input (tcpdump -w - ... | svcpath replay - ...); gzip is read as it is,
whatever the name. An output - is standard output, and the summary then goes to stderr. Ctrl-C (or
SIGTERM) ends the replay at a batch boundary with what was processed written: exit status 130 (143).

Flags:
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
  --out OUT.pcap|OUT.pcapng|-      write the TX and REDIRECT frames, rewritten, in input order
  --verdicts OUT.jsonl|-           one JSON verdict per input packet
  --summary OUT.json|-             the summary as JSON
  --workers N                      replay on N threads, each with its own maps, flows sharded by client
                                   (same output as one worker; default 1; not with a capture from a pipe)
${HELP_FOOTER}`,

  trace: `svcpath trace: what the datapath did with each chosen packet, step by step: headers, every map
lookup with key and result, the Maglev slot, the rewrite, the verdict

Usage:
  svcpath trace <trace> --cluster <file-or-dir> [--packet N]... [--flow IP:PORT]... [--service NS/NAME[:PORT]]... [flags]

A packet is traced when any of --packet, --flow, --service chooses it; every packet when none is given.
One that chooses nothing is named on stderr, and the exit status is 1.

Flags:
  --packet N                       the N-th packet of the capture (repeatable)
  --flow IP:PORT                   packets from or to IP:PORT, as captured or as rewritten: a frontend's
                                   flows and their replies, a backend's flows (repeatable; [IPv6]:PORT)
  --service NS/NAME[:PORT]         packets decided for the Service (or one of its ports, by name or number)
  --json                           the traces as JSON
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${HELP_FOOTER}`,

  diff: `svcpath diff: the flows whose decision (backend, verdict, masquerading) changes between two cluster
states, counted per Service

Usage:
  svcpath diff <trace> --cluster <before> [--cluster ...] --against <after> [--against ...] [flags]

Flags:
  --against PATH                   the other cluster state, read as --cluster is (repeatable)
  --json                           the report as JSON
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
${HELP_FOOTER}`,

  test: `svcpath test: regression cases; a case is a directory with cluster.yaml (or cluster/), input.pcap(ng),
an optional args file (replay flags, one line) and expected/verdicts.jsonl, expected/output.pcap(ng);
a directory that is no case is searched one level down for cases

Usage:
  svcpath test <case-dir>... [--update] [--junit FILE]

Flags:
  --update                         (re)write the expected files from what the replay does now
  --junit FILE                     a JUnit XML report
${HELP_FOOTER}`,

  services: `svcpath services: every Service after allocation, like kubectl get svc -A -o wide, with endpoints,
traffic policies and session affinity

Usage:
  svcpath services --cluster <file-or-dir> [--cluster ...] [flags]

Flags:
${CLUSTER_OPTIONS}
  --json                           the Services as JSON: typed values, one object per Service
${HELP_FOOTER}`,

  endpoints: `svcpath endpoints: the EndpointSlices the EndpointSlice controller derives from the Pods, like
kubectl get endpointslices -A

Usage:
  svcpath endpoints --cluster <file-or-dir> [--cluster ...] [-o yaml|json] [--legacy]

Flags:
${CLUSTER_OPTIONS}
  -o, --output yaml|json           the slices as a List
  --legacy                         also the v1 Endpoints the Endpoints controller makes of the Pods
${HELP_FOOTER}`,

  env: `svcpath env: the Service environment variables the kubelet gives a Pod created now in a namespace

Usage:
  svcpath env --cluster <file-or-dir> [--cluster ...] --namespace NS [--enable-service-links=false] [--json]

Flags:
${CLUSTER_OPTIONS}
  --namespace NS                   the Pod's namespace (required)
  --enable-service-links=false     as the Pod field: only the kubernetes Service's variables
  --json                           the variables per Service as JSON
${HELP_FOOTER}`,

  dns: `svcpath dns: the records the cluster DNS serves for Services, as a zone file, or how one name resolves

Usage:
  svcpath dns --cluster <file-or-dir> [--cluster ...] [--domain D] [--query NAME [--type T] [--from-namespace NS]] [--json]

Flags:
${CLUSTER_OPTIONS}
  --domain D                       the cluster domain (default cluster.local)
  --query NAME                     resolve NAME as a Pod does (search path, ndots:5)
  --type A|AAAA|SRV|CNAME|PTR|TXT  the record type asked for (default A)
  --from-namespace NS              the asking Pod's namespace (default default)
  --json                           the records or the resolution as JSON
${HELP_FOOTER}`,

  maps: `svcpath maps: the compiled maps, like bpftool map dump (Maglev tables as slots per backend)

Usage:
  svcpath maps --cluster <file-or-dir> [--cluster ...] [flags]

Flags:
${CLUSTER_OPTIONS}
${DATAPATH_OPTIONS}
  --json                           the maps as JSON
${HELP_FOOTER}`,
} as const;

type Command = keyof typeof COMMAND_HELP;

const OVERVIEW = `svcpath — replay captured packets through an eBPF/XDP-style Kubernetes Service datapath

Usage:
  svcpath replay <trace.pcap|trace.pcapng|-> --cluster <file-or-dir> [--cluster ...] [flags]
  svcpath trace <trace> --cluster <file-or-dir> [--packet N]... [--flow IP:PORT]... [--service NS/NAME[:PORT]]... [--json]
  svcpath diff <trace> --cluster <before> [--cluster ...] --against <after> [--against ...] [flags] [--json]
  svcpath test <case-dir>... [--update] [--junit FILE]
  svcpath services --cluster <file-or-dir> [--cluster ...] [--json]
  svcpath endpoints --cluster <file-or-dir> [--cluster ...] [-o yaml|json] [--legacy]
  svcpath env --cluster <file-or-dir> [--cluster ...] --namespace NS [--enable-service-links=false] [--json]
  svcpath dns --cluster <file-or-dir> [--cluster ...] [--domain D] [--query NAME [--type T] [--from-namespace NS]] [--json]
  svcpath maps --cluster <file-or-dir> [--cluster ...] [flags] [--json]
  svcpath --version

Commands:
  replay      a verdict per packet, the rewritten frames and a summary
  trace       what the datapath did with chosen packets, step by step
  diff        the flows whose decision changes between two cluster states
  test        regression cases: capture, cluster state and expected output in a directory
  services    every Service after allocation, like kubectl get svc -A -o wide
  endpoints   the EndpointSlices derived from the Pods, like kubectl get endpointslices -A
  env         the Service environment variables of a Pod created now
  dns         the cluster DNS's records for Services, or how one name resolves
  maps        the compiled maps, like bpftool map dump

svcpath <command> --help (or svcpath help <command>) lists the command's flags.

Exit status: 0 on success, 1 on bad input (the message names file, record or object, and field).`;

/** `svcpath help [command]`: the overview, or that command's help. */
function helpCommand(argv: string[]): number {
  const [command] = argv;
  if (command === undefined) {
    console.log(OVERVIEW);
    return 0;
  }
  if (!isCommand(command)) unknownCommand(command);
  return printHelp(command);
}

function printHelp(command: Command): number {
  console.log(COMMAND_HELP[command]);
  return 0;
}

function isCommand(word: string): word is Command {
  return Object.hasOwn(COMMAND_HELP, word);
}

/** One line for a word that is no command, with the closest one. */
function unknownCommand(word: string): never {
  if (word.startsWith('-')) fail(`${word}: not a command; flags come after the command (svcpath <command> [flags]; svcpath --help lists the commands)`);
  fail(`unknown command "${word}"${didYouMean(closest(word, Object.keys(COMMAND_HELP))) || ' (svcpath --help lists the commands)'}`);
}

/** package.json's version, read at run time so that it cannot drift from the package. */
function version(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

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

/** One address per family, comma-separated. */
function parseAddressList(flag: string, text: string): string[] {
  const items = text.split(',').map((a) => a.trim()).filter(Boolean);
  const families = new Set<string>();
  for (const item of items) {
    const v4 = ipaddr.IPv4.isValidFourPartDecimal(item);
    if (!v4 && !(ipaddr.IPv6.isValid(item) && !item.includes('%'))) fail(`${flag}: "${item}" is not an IP address`);
    const family = v4 ? 'IPv4' : 'IPv6';
    if (families.has(family)) fail(`${flag}: more than one ${family} address`);
    families.add(family);
  }
  if (items.length === 0) fail(`${flag}: empty`);
  return items;
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

/** A progress bar on stderr, only when it is a terminal; packets only when the capture's size is unknown (a pipe). */
function progressBar(): { update(done: number, total: number | undefined, packets: number): void; end(): void } {
  if (!process.stderr.isTTY) return { update() {}, end() {} };
  let last = -1;
  return {
    update(done, total, packets) {
      if (total === undefined) {
        last = packets;
        process.stderr.write(`\r${packets} packets`);
        return;
      }
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

const CLUSTER_FLAGS = {
  cluster: { type: 'string', multiple: true },
  'service-cluster-ip-range': { type: 'string' },
  'service-node-port-range': { type: 'string' },
  seed: { type: 'string' },
  'max-endpoints-per-slice': { type: 'string' },
  strict: { type: 'boolean' },
} as const;

interface ClusterFlags {
  cluster?: string[];
  'service-cluster-ip-range'?: string;
  'service-node-port-range'?: string;
  seed?: string;
  'max-endpoints-per-slice'?: string;
  strict?: boolean;
}

/** The cluster state the flags name, validated, with cluster IPs and NodePorts allocated; its warnings on stderr. */
function loadState(values: ClusterFlags): { state: ClusterState; seed: number } {
  if (!values.cluster?.length) fail('--cluster is required');
  const seed = values.seed === undefined ? 0 : parseInteger('--seed', values.seed, 0, 0xffffffff);
  const serviceRanges = values['service-cluster-ip-range'] === undefined
    ? undefined : parseCidrList('--service-cluster-ip-range', values['service-cluster-ip-range']);
  const nodePortRange = values['service-node-port-range'] === undefined
    ? undefined : parsePortRange('--service-node-port-range', values['service-node-port-range']);
  const maxEndpointsPerSlice = values['max-endpoints-per-slice'] === undefined
    ? undefined : parseInteger('--max-endpoints-per-slice', values['max-endpoints-per-slice'], 1, MAX_MAX_ENDPOINTS_PER_SLICE);
  const state = loadClusterState(values.cluster, {
    serviceClusterIPRanges: serviceRanges, serviceNodePortRange: nodePortRange, seed, maxEndpointsPerSlice, strict: values.strict,
  });
  for (const warning of state.warnings ?? []) console.error(`svcpath: warning: ${warning}`);
  return { state, seed };
}

async function servicesCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('services', argv, { ...CLUSTER_FLAGS, json: { type: 'boolean' } });
  if (values.help) return printHelp('services');
  if (positionals.length > 0) fail(`services: unexpected argument "${positionals[0]}"`);
  const { state } = loadState(values);
  console.log(values.json ? JSON.stringify(serviceRows(state), null, 2) : formatServicesTable(state, { wide: true }));
  return 0;
}

async function envCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('env', argv, {
    ...CLUSTER_FLAGS, namespace: { type: 'string' }, 'enable-service-links': { type: 'string' }, json: { type: 'boolean' },
  });
  if (values.help) return printHelp('env');
  if (positionals.length > 0) fail(`env: unexpected argument "${positionals[0]}"`);
  if (values.namespace === undefined) fail('--namespace is required (the namespace of the Pod)');
  const namespace = parseName('--namespace', values.namespace);
  const links = values['enable-service-links'];
  if (links !== undefined && links !== 'true' && links !== 'false') fail(`--enable-service-links: "${links}" is neither true nor false`);
  const { state } = loadState(values);
  const env = podEnv(state, namespace, { enableServiceLinks: links !== 'false' });
  for (const note of env.notes) console.error(`svcpath: note: ${note}`);
  console.log(values.json ? JSON.stringify(env, null, 2) : formatEnv(env));
  return 0;
}

async function dnsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('dns', argv, {
    ...CLUSTER_FLAGS,
    domain: { type: 'string' },
    query: { type: 'string' },
    type: { type: 'string' },
    'from-namespace': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return printHelp('dns');
  if (positionals.length > 0) fail(`dns: unexpected argument "${positionals[0]}"`);
  if (values.query === undefined && (values.type !== undefined || values['from-namespace'] !== undefined)) {
    fail(`${values.type !== undefined ? '--type' : '--from-namespace'}: only with --query`);
  }
  const type = values.type === undefined ? undefined : values.type.toUpperCase() as RecordType;
  if (type !== undefined && !QUERY_TYPES.includes(type)) fail(`--type: "${values.type}" is not one of ${QUERY_TYPES.join(', ')}`);
  const fromNamespace = values['from-namespace'] === undefined ? undefined : parseName('--from-namespace', values['from-namespace']);
  const { state } = loadState(values);
  const zone = clusterZone(state, { domain: values.domain });
  if (values.query === undefined) {
    console.log(values.json ? JSON.stringify(zone, null, 2) : formatZone(zone));
    return 0;
  }
  const result = resolveQuery(zone, values.query, { type, fromNamespace });
  console.log(values.json ? JSON.stringify(result, null, 2) : formatQuery(result));
  return 0;
}

/** A namespace name: an RFC 1123 label, as the API server requires. */
function parseName(flag: string, text: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(text)) {
    fail(`${flag}: "${text}" is not a namespace name (an RFC 1123 label: at most 63 lowercase letters, digits and '-', `
      + 'starting and ending with a letter or digit)');
  }
  return text;
}

async function endpointsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('endpoints', argv, {
    ...CLUSTER_FLAGS, output: { type: 'string', short: 'o' }, legacy: { type: 'boolean' },
  });
  if (values.help) return printHelp('endpoints');
  if (positionals.length > 0) fail(`endpoints: unexpected argument "${positionals[0]}"`);
  const output = values.output ?? 'table';
  if (!['table', 'yaml', 'json'].includes(output)) fail(`--output: "${output}" is not yaml or json`);
  const { state } = loadState(values);
  console.log(formatEndpoints(state, output as OutputFormat, values.legacy ?? false));
  return 0;
}

/** Flags that shape the compiled datapath, shared by replay and maps. */
const DATAPATH_FLAGS = {
  ...CLUSTER_FLAGS,
  node: { type: 'string' },
  'cluster-cidr': { type: 'string' },
  'nodeport-addresses': { type: 'string' },
  'masquerade-all': { type: 'boolean' },
  'masquerade-address': { type: 'string' },
  'snat-port-range': { type: 'string' },
  'maglev-table-size': { type: 'string' },
  'ct-entries': { type: 'string' },
} as const;

interface DatapathFlags extends ClusterFlags {
  node?: string;
  'cluster-cidr'?: string;
  'nodeport-addresses'?: string;
  'masquerade-all'?: boolean;
  'masquerade-address'?: string;
  'snat-port-range'?: string;
  'maglev-table-size'?: string;
  'ct-entries'?: string;
}

/** The cluster state the flags name, compiled and loaded into a datapath. */
/** The cluster state from the flags, compiled, and the conntrack size asked for. */
function compileFromFlags(values: DatapathFlags) {
  const maglevTableSize = values['maglev-table-size'] === undefined
    ? DEFAULT_MAGLEV_TABLE_SIZE
    : parseInteger('--maglev-table-size', values['maglev-table-size'], 2, 1 << 20);
  if (!isPrime(maglevTableSize)) fail(`--maglev-table-size: ${maglevTableSize} is not prime`);
  const ctEntries = values['ct-entries'] === undefined ? DEFAULT_CT_ENTRIES : parseInteger('--ct-entries', values['ct-entries'], 2, 1 << 26);
  const clusterCIDRs = values['cluster-cidr'] === undefined ? undefined : parseCidrList('--cluster-cidr', values['cluster-cidr']);
  const nodePortAddresses = values['nodeport-addresses'] === undefined
    ? undefined : parseNodePortAddresses('--nodeport-addresses', values['nodeport-addresses']);
  const snatPortRange = values['snat-port-range'] === undefined ? undefined : parsePortRange('--snat-port-range', values['snat-port-range']);
  const masqueradeAddresses = values['masquerade-address'] === undefined ? [] : parseAddressList('--masquerade-address', values['masquerade-address']);
  const masqueradeAddress = masqueradeAddresses.find((a) => !a.includes(':'));
  const masqueradeAddress6 = masqueradeAddresses.find((a) => a.includes(':'));

  const { state, seed } = loadState(values);
  const resolved = resolveServices(state);
  const compiled = compile(state, resolved.services, {
    node: values.node, seed, maglevTableSize, clusterCIDRs, nodePortAddresses, snatPortRange, masqueradeAddress, masqueradeAddress6,
    masqueradeAll: values['masquerade-all'],
  });
  return { state, resolved, compiled, ctEntries };
}

async function buildDatapath(values: DatapathFlags) {
  const built = compileFromFlags(values);
  return { ...built, dp: await loadProgram(built.compiled, { ctEntries: built.ctEntries }) };
}

async function mapsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('maps', argv, { ...DATAPATH_FLAGS, json: { type: 'boolean' } });
  if (values.help) return printHelp('maps');
  if (positionals.length > 0) fail(`maps: unexpected argument "${positionals[0]}"`);
  const { dp } = await buildDatapath(values);
  const dumps = dumpMaps(dp);
  console.log(values.json ? JSON.stringify(dumps, null, 2) : formatMapDump(dumps));
  return 0;
}

/**
 * A case's replay flags (its `args` file plus its cluster) through the same
 * parsing as the CLI's. A flag's error (its message starts with the flag) is
 * the args file's, and says so; the cluster's errors name their file already.
 */
const prepareCase: PrepareDatapath = async (argv, argsFile) => {
  const { values, positionals } = parseCommandArgs(argsFile, argv, DATAPATH_FLAGS);
  if (positionals.length > 0) fail(`${argsFile}: unexpected argument "${positionals[0]}"`);
  try {
    const { compiled, dp } = await buildDatapath(values);
    return { compiled, dp };
  } catch (e) {
    if (e instanceof InputError && e.message.startsWith('--')) throw inputError([argsFile], e.message);
    throw e;
  }
};

async function testCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('test', argv, { update: { type: 'boolean' }, junit: { type: 'string' } });
  if (values.help) return printHelp('test');
  if (positionals.length === 0) fail('test: name at least one directory of test cases');
  const results: CaseResult[] = [];
  const cases = findCases(positionals);
  if (values.junit) checkOutputs([{ flag: '--junit', path: values.junit }], cases.map((c) => ({ flag: 'test case', path: c.dir })));
  for (const found of cases) {
    const r = await runCase(found, prepareCase, values.update ?? false);
    results.push(r);
    console.log(r.passed ? `${r.updated ? 'UPDATED' : 'PASS'} ${r.name}` : `FAIL ${r.name} (${r.dir})\n${r.failure}`);
  }
  if (values.junit) writeOutputFile(values.junit, junitReport(results));
  const failed = results.filter((r) => !r.passed).length;
  console.log(`${results.length - failed} passed, ${failed} failed`);
  return failed > 0 ? 1 : 0;
}

async function traceCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('trace', argv, {
    ...DATAPATH_FLAGS,
    packet: { type: 'string', multiple: true },
    flow: { type: 'string', multiple: true },
    service: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  if (values.help) return printHelp('trace');
  if (positionals.length !== 1) fail(`trace: expected one trace file, got ${positionals.length}`);
  const packets = (values.packet ?? []).map((p) => parseInteger('--packet', p, 1, Number.MAX_SAFE_INTEGER));
  const { compiled, dp } = await buildDatapath(values);
  const { traces, unmatched, stoppedAt } = await traceReplay(positionals[0], compiled, dp, {
    packets, flows: values.flow ?? [], services: values.service ?? [],
  });
  // What was found is printed even when a selector found nothing or the capture broke part-way.
  console.log(values.json ? JSON.stringify(traces, null, 2) : formatTraces(traces));
  for (const line of unmatched) console.error(`svcpath: trace: ${line}`);
  if (stoppedAt) console.error(`svcpath: ${stoppedAt.error}`);
  return unmatched.length > 0 || stoppedAt ? 1 : 0;
}

async function diffCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('diff', argv, {
    ...DATAPATH_FLAGS, against: { type: 'string', multiple: true }, json: { type: 'boolean' },
  });
  if (values.help) return printHelp('diff');
  if (positionals.length !== 1) fail(`diff: expected one trace file, got ${positionals.length}`);
  if (!values.against?.length) fail('diff: --against is required (the other cluster state)');
  const before = await buildDatapath(values);
  const after = await buildDatapath({ ...values, cluster: values.against });
  // A pipe is copied to a temporary file first (diff reads the capture three times): a Ctrl-C must remove it.
  const signals = stopOnSignals();
  try {
    const report = await diffReplays(positionals[0], before, after, signals.signal);
    console.log(values.json ? JSON.stringify(report, null, 2) : formatDiff(report));
  } finally {
    signals.release();
  }
  return 0;
}

async function replayCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs('replay', argv, {
    ...DATAPATH_FLAGS,
    out: { type: 'string' },
    verdicts: { type: 'string' },
    summary: { type: 'string' },
    workers: { type: 'string' },
  });
  if (values.help) return printHelp('replay');
  if (positionals.length !== 1) fail(`replay: expected one trace file, got ${positionals.length}`);
  const trace = positionals[0];
  const outputFlags = (['out', 'verdicts', 'summary'] as const).filter((f) => values[f] !== undefined).map((f) => ({ flag: `--${f}`, path: values[f]! }));
  checkOutputs(outputFlags, [{ flag: 'capture', path: trace }, ...(values.cluster ?? []).map((path) => ({ flag: '--cluster', path }))], ['--out']);
  const workers = values.workers === undefined ? 1 : parseInteger('--workers', values.workers, 1, 64);
  const { state, resolved, compiled, ctEntries } = compileFromFlags(values);
  const bar = progressBar();
  const signals = stopOnSignals();
  const outputs = {
    out: values.out, verdicts: values.verdicts, signal: signals.signal,
    onProgress: (done: number, total: number | undefined, packets: number) => bar.update(done, total, packets),
  };
  let replayed: { result: ReplayResult; counters: Counters };
  try {
    if (workers > 1) {
      replayed = await replaySharded(trace, compiled, { ...outputs, workers, ctEntries });
    } else {
      const dp = await loadProgram(compiled, { ctEntries });
      replayed = { result: await replay(trace, compiled, dp, outputs), counters: readCounters(dp, compiled) };
    }
    bar.end();
    const { result, counters } = replayed;
    const notes = [...state.notes, ...resolved.notes, ...compiled.notes, ...result.notes];
    const summary = buildSummary(result, compiled, counters, notes, state.warnings);
    if (values.summary) writeOutputFile(values.summary, JSON.stringify(summary, null, 2) + '\n');
    // Standard output carries an output: the summary for people goes to stderr.
    (outputFlags.some((o) => o.path === STDOUT) ? console.error : console.log)(formatSummary(summary));
    if (result.interrupted) return SIGNAL_EXIT_STATUS[result.interrupted.signal] ?? 130;
    if (result.stoppedAt) {
      console.error(`svcpath: ${result.stoppedAt.error}`);
      return 1;
    }
    const undecided = nothingDecided(result, summary);
    if (undecided) {
      console.error(`svcpath: ${undecided}`);
      return 1;
    }
    return 0;
  } finally {
    signals.release();
  }
}

/**
 * A capture none of whose frames svcpath could parse (every one of an
 * unsupported link type) is no replay at all: the one line that says so.
 * An empty capture is not: it has nothing undecided.
 */
function nothingDecided(result: ReplayResult, summary: Summary): string | undefined {
  if (result.packets === 0 || summary.reasons.UNSUPPORTED_LINKTYPE !== result.packets) return undefined;
  const names = new Map<number, string>(Object.entries(LINKTYPES).map(([name, value]) => [value, name]));
  const types = result.linktypes.filter((t) => !names.has(t));
  const which = types.length === 1 ? `link type ${types[0]} is not one` : `link types ${types.join(', ')} are not ones`;
  return `${result.trace}: not one of its ${result.packets} packets could be decided: ${which} svcpath parses (see Captures in the README)`;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
        console.log(OVERVIEW);
        return 1;
      case '--help':
      case '-h':
      case 'help':
        return helpCommand(rest);
      case '--version':
      case '-V':
        console.log(`svcpath ${version()}`);
        return 0;
      case 'replay':
        return await replayCommand(rest);
      case 'services':
        return await servicesCommand(rest);
      case 'endpoints':
        return await endpointsCommand(rest);
      case 'env':
        return await envCommand(rest);
      case 'dns':
        return await dnsCommand(rest);
      case 'maps':
        return await mapsCommand(rest);
      case 'test':
        return await testCommand(rest);
      case 'diff':
        return await diffCommand(rest);
      case 'trace':
        return await traceCommand(rest);
      default:
        unknownCommand(command);
    }
  } catch (e) {
    if (isInputError(e)) {
      console.error(`svcpath: ${e.message}`);
      return 1;
    }
    if (e instanceof Interrupted) {
      console.error(`svcpath: ${e.message}`);
      return SIGNAL_EXIT_STATUS[e.signal] ?? 130;
    }
    throw e;
  }
}
