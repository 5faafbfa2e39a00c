/**
 * `--kernel`: a yardstick for `ct-hit` from the running kernel. The XDP
 * program bench/kernel/ct-hit.bpf.c, of ct-hit's shape, is compiled with
 * clang, loaded with bpftool, its maps filled with ct-hit's Services and its
 * 4096 flows opened by sending each once, then timed with
 * BPF_PROG_TEST_RUN (`bpftool prog run ... repeat N`): the median of
 * several runs, beside the WASM ct-hit of the same bench run. Needs Linux,
 * root, clang, bpftool and the bpf filesystem at /sys/fs/bpf; elsewhere it
 * says why not. bench/kernel/README.md says what the program does and omits.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { PROJECT_ROOT } from '../control/common/paths.js';
import { decodeFrame, verifyChecksums } from '../traces/frames.js';
import { BACKENDS_PER_SERVICE, CT_HIT_FLOWS, SERVICES } from './inprocess.js';
import { flowPacket, syntheticCluster } from './synthetic.js';

export type KernelReport =
  | {
      program: 'ct-hit';
      /** Median of the runs. */
      nsPerPacket: number;
      /** Each run's average, as BPF_PROG_TEST_RUN reports it (whole nanoseconds). */
      runs: number[];
      packetsPerRun: number;
      /** Median of as many runs of the harness alone (the test-run loop, and making the buffer the next flow's packet), taken in turn with them: a part of nsPerPacket. */
      harnessNsPerPacket: number;
      /** Conntrack entries after the flows were opened: two a flow. */
      ctEntries: number;
      wasmNsPerPacket: number;
      /** WASM's time per packet over the kernel's. */
      ratio: number;
    }
  | { skipped: string };

const SOURCE = join(PROJECT_ROOT, 'bench', 'kernel', 'ct-hit.bpf.c');
const BPF_FS = '/sys/fs/bpf';
const RUNS = 7;
/** About half a second a run at 100 ns a packet. */
const PACKETS_PER_RUN = 5_000_000;
const XDP_TX = 3;
const IPPROTO_TCP = 6;

/** Why this machine cannot run the kernel program, or undefined when it can. */
export function whyNoKernel(): string | undefined {
  if (process.platform !== 'linux') return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return 'not root (BPF_PROG_TEST_RUN of an XDP program needs it)';
  const missing = ['clang', 'bpftool'].filter((tool) => findTool(tool) === undefined);
  if (missing.length) return `no ${missing.join(' and no ')} (apt-get install -y clang bpftool)`;
  if (!bpfFsMounted()) return `no bpf filesystem at ${BPF_FS} (mount -t bpf bpf ${BPF_FS})`;
  return undefined;
}

/** An executable on PATH, or in the sbin directories a root shell would have on it. */
function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'].filter((dir) => isAbsolute(dir));
  return dirs.map((dir) => join(dir, name)).find((path) => existsSync(path));
}

function bpfFsMounted(): boolean {
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n');
  return mounts.some((line) => {
    const [, mountPoint, type] = line.split(' ');
    return mountPoint === BPF_FS && type === 'bpf';
  });
}

const PIN_PREFIX = 'svcpath-bench-';

/**
 * Times the kernel program beside the WASM ct-hit's `wasmNsPerPacket`, on
 * a machine whyNoKernel accepts; `scratch` holds its temporary files.
 * Prints what it measured or why it could not, and removes everything it
 * pinned and wrote, on failure too, and on SIGINT or SIGTERM (then exits):
 * the tools run asynchronously so that a signal is handled at once.
 */
export async function kernelCtHit(scratch: string, wasmNsPerPacket: number): Promise<KernelReport> {
  removeStalePins();
  const work = mkdtempSync(join(scratch, 'kernel-'));
  const pins = join(BPF_FS, `${PIN_PREFIX}${process.pid}`);
  const cleanUp = () => {
    rmSync(pins, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    cleanUp();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  try {
    return await measure(await KernelProgram.load(work, pins), wasmNsPerPacket);
  } catch (err) {
    // Ctrl-C reaches the tool too, and its death may come before the signal's handler runs.
    const { signal } = err as { signal?: NodeJS.Signals };
    if (signal === 'SIGINT' || signal === 'SIGTERM') onSignal(signal);
    return kernelSkipped(`could not run it: ${(err as Error).message}`);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    cleanUp();
  }
}

/** Pins of bench runs that were killed (SIGKILL) before they could remove them. */
function removeStalePins(): void {
  for (const name of readdirSync(BPF_FS)) {
    const pid = name.startsWith(PIN_PREFIX) ? Number(name.slice(PIN_PREFIX.length)) : Number.NaN;
    if (Number.isInteger(pid) && !isRunning(pid)) rmSync(join(BPF_FS, name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Says, in one line, why the kernel program was not timed. */
export function kernelSkipped(why: string): KernelReport {
  console.log(`kernel ct-hit: skipped: ${why}`);
  return { skipped: why };
}

async function measure(program: KernelProgram, wasmNsPerPacket: number): Promise<KernelReport> {
  await program.fillServices();
  await program.openFlows();
  const ctEntries = await program.ctEntries();
  const before = await program.counts();
  const runs: number[] = [];
  const harnessRuns: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    runs.push(await program.run('ct_hit', PACKETS_PER_RUN));
    harnessRuns.push(await program.run('harness', PACKETS_PER_RUN));
  }
  const after = await program.counts();
  if (after.hits - before.hits !== RUNS * PACKETS_PER_RUN || after.opened !== before.opened || after.passed !== before.passed)
    console.log(`kernel ct-hit: WARNING: not every timed packet hit conntrack (${JSON.stringify({ before, after })})`);
  await program.checkOnePacket();
  const nsPerPacket = median(runs);
  const harnessNsPerPacket = median(harnessRuns);
  const ratio = wasmNsPerPacket / nsPerPacket;
  console.log(
    `kernel ct-hit: ${nsPerPacket} ns/packet (XDP, BPF_PROG_TEST_RUN, median of ${RUNS} runs of ${PACKETS_PER_RUN}: ${runs.join(' ')} ns; ` +
      `${harnessNsPerPacket} ns of it the test run's harness; ${ctEntries} conntrack entries), ` +
      `WASM ct-hit ${wasmNsPerPacket.toFixed(0)} ns/packet: ${ratio.toFixed(1)}x the kernel's time`,
  );
  return { program: 'ct-hit', nsPerPacket, runs, packetsPerRun: PACKETS_PER_RUN, harnessNsPerPacket, ctEntries, wasmNsPerPacket, ratio };
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The program's per-CPU run_state summed over the CPUs. */
interface Counts {
  hits: number;
  opened: number;
  passed: number;
}

/** The programs of ct-hit.bpf.c: the datapath, and the test-run harness alone. */
type ProgramName = 'ct_hit' | 'harness';

/** The compiled, loaded and pinned programs and their maps, driven through bpftool. */
class KernelProgram {
  private readonly programs: string;
  private readonly maps: string;
  /** ct-hit's first packet: each run turns it into the next flow's. */
  private readonly packet: string;

  private constructor(
    private readonly work: string,
    pins: string,
  ) {
    this.programs = join(pins, 'programs');
    this.maps = join(pins, 'maps');
    this.packet = join(work, 'packet.bin');
  }

  /** Compiled in `work`, loaded, and pinned with their maps under `pins`. */
  static async load(work: string, pins: string): Promise<KernelProgram> {
    const loaded = new KernelProgram(work, pins);
    const object = join(work, 'ct-hit.bpf.o');
    await tool('clang', ['-O2', '-g', '-target', 'bpf', '-c', SOURCE, '-o', object]);
    mkdirSync(pins);
    await tool('bpftool', ['prog', 'loadall', object, loaded.programs, 'type', 'xdp', 'pinmaps', loaded.maps]);
    writeFileSync(loaded.packet, flowPacket(0, SERVICES));
    return loaded;
  }

  /** ct-hit's 100 Services and their 10 backends each, from the same synthetic cluster, in one bpftool batch. */
  async fillServices(): Promise<void> {
    const lines: string[] = [];
    ctHitServices().forEach(({ frontend, backends }, s) => {
      const first = s * BACKENDS_PER_SERVICE;
      const key = [...ipv4Bytes(frontend.ip), ...port(frontend.port), IPPROTO_TCP, 0];
      lines.push(this.update('services', key, [...hostU32(backends.length), ...hostU32(first), ...hostU32(s + 1)]));
      backends.forEach((backend, b) => {
        lines.push(this.update('backends', hostU32(first + b), [...ipv4Bytes(backend.ip), ...port(backend.port), 0, 0]));
      });
    });
    const batch = join(this.work, 'fill.batch');
    writeFileSync(batch, `${lines.join('\n')}\n`);
    await tool('bpftool', ['batch', 'file', batch]);
  }

  /** Sends each flow's packet once, as ct-hit does before timing. */
  async openFlows(): Promise<void> {
    await this.run('ct_hit', CT_HIT_FLOWS);
    const { opened } = await this.counts();
    if (opened !== CT_HIT_FLOWS) console.log(`kernel ct-hit: WARNING: ${opened} flows opened, not ${CT_HIT_FLOWS}`);
  }

  async ctEntries(): Promise<number> {
    return (JSON.parse(await tool('bpftool', ['-j', 'map', 'dump', 'pinned', join(this.maps, 'ct4')])) as unknown[]).length;
  }

  /** `packets` runs of a program in one BPF_PROG_TEST_RUN: the average nanoseconds per run. */
  async run(program: ProgramName, packets: number, dataOut?: string): Promise<number> {
    const out = dataOut ? ['data_out', dataOut] : [];
    const args = ['-j', 'prog', 'run', 'pinned', join(this.programs, program), 'data_in', this.packet, ...out, 'repeat', String(packets)];
    const { retval, duration } = JSON.parse(await tool('bpftool', args)) as { retval: number; duration: number };
    if (retval !== XDP_TX) throw new Error(`${program} returned ${retval}, not XDP_TX`);
    return duration;
  }

  async counts(): Promise<Counts> {
    const json = await tool('bpftool', ['-j', 'map', 'lookup', 'pinned', join(this.maps, 'run_state'), 'key', '0', '0', '0', '0']);
    const { values } = JSON.parse(json) as { values: Array<{ value: string[] }> };
    const sum = { hits: 0, opened: 0, passed: 0 };
    for (const { value } of values) {
      // struct run_state: u32 next_flow, u32 pad, u64 hits, opened, passed, in the host's byte order.
      const view = new DataView(Uint8Array.from(value, (hex) => Number.parseInt(hex, 16)).buffer);
      const u64 = (at: number) => Number(view.getBigUint64(at, isLittleEndian()));
      sum.hits += u64(8);
      sum.opened += u64(16);
      sum.passed += u64(24);
    }
    return sum;
  }

  /**
   * One packet out: a flow of ct-hit's (so the C program makes the same
   * packets as bench/synthetic.ts), sent to a backend of its Service, its
   * checksums valid.
   */
  async checkOnePacket(): Promise<void> {
    const out = join(this.work, 'out.bin');
    await this.run('ct_hit', 1, out);
    const frame = new Uint8Array(readFileSync(out));
    const { ipv4, tcp } = decodeFrame(frame);
    const flow = ipv4 && tcp ? flowOf(ipv4.src, tcp.sport) : undefined;
    const backends = flow === undefined ? [] : ctHitServices()[flow % SERVICES].backends.map((b) => `${b.ip}:${b.port}`);
    const checksums = verifyChecksums(frame);
    const ok = ipv4 && tcp && backends.includes(`${ipv4.dst}:${tcp.dport}`) && checksums.ipv4 === true && checksums.l4 === true;
    if (!ok)
      console.log(
        `kernel ct-hit: WARNING: a packet out is not a ct-hit flow's, DNATed to a backend of its Service with valid checksums (${out})`,
      );
  }

  private update(map: string, key: number[] | Uint8Array, value: number[] | Uint8Array): string {
    return `map update pinned ${join(this.maps, map)} key hex ${hex(key)} value hex ${hex(value)}`;
  }
}

/** Runs a tool to completion: its stdout, or an error with the end of what it said. */
function tool(name: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(findTool(name) ?? name, args, { encoding: 'utf8', maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const said = `${stderr}${stdout}`.trim().split('\n').filter(Boolean).slice(-3).join(' / ');
      const how = err.signal ? `killed by ${err.signal}` : `exit ${err.code}`;
      reject(Object.assign(new Error(`${name} ${args.slice(0, 2).join(' ')} failed (${how}): ${said}`), { signal: err.signal }));
    });
  });
}

/** The index of ct-hit's flow from this client, or undefined. */
function flowOf(src: string, sport: number): number | undefined {
  for (let i = 0; i < CT_HIT_FLOWS; i++) {
    const { ipv4, tcp } = decodeFrame(flowPacket(i, SERVICES));
    if (ipv4?.src === src && tcp?.sport === sport) return i;
  }
  return undefined;
}

interface Endpoint {
  ip: string;
  port: number;
}

/** ct-hit's Services: each one's cluster IP and port, and its backends. */
function ctHitServices(): Array<{ frontend: Endpoint; backends: Endpoint[] }> {
  return syntheticCluster(SERVICES, BACKENDS_PER_SERVICE).resolved.map(({ service, ports: [{ port, endpoints }] }) => ({
    frontend: { ip: service.clusterIPs[0], port: port.port },
    backends: endpoints.map(({ ip, port }) => ({ ip, port })),
  }));
}

const ipv4Bytes = (ip: string) => ip.split('.').map(Number);
const port = (p: number) => [p >> 8, p & 255];
const hostU32 = (n: number) => new Uint8Array(new Uint32Array([n]).buffer);
const isLittleEndian = () => hostU32(1)[0] === 1;
const hex = (bytes: number[] | Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
