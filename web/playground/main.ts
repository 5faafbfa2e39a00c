/**
 * The playground's page: `svcpath replay` in a browser. The user gives a
 * capture, manifests and optionally watch events (dropped, picked, or the
 * bundled sample), picks the node and the settings, and runs; the page runs
 * the CLI's own code on them (control/runtime/setup.ts buildReplayDatapath,
 * replay.ts replay, summary.ts, report-data.ts) with the WebAssembly
 * datapath it fetched beside itself, and shows the summary, the report and
 * downloads of the verdicts and the output capture. Only file access differs:
 * the inputs are bytes and texts in memory (traces/memory.ts, control/cluster
 * parseClusterState, parseEvents), the outputs memory sinks offered as Blobs.
 * The page fetches nothing but its own assets, and sends nothing anywhere.
 */
import { type ManifestText, parseClusterState, parseEvents } from '../../control/cluster/index.js';
import { InputError, isInputError } from '../../control/common/errors.js';
import { timelineOf } from '../../control/runtime/cluster-sync.js';
import { replay } from '../../control/runtime/replay.js';
import { commandLine, ReportCollector } from '../../control/runtime/report-data.js';
import { REPORT_FORMAT } from '../../control/runtime/report-types.js';
import { buildReplayDatapath, type DatapathFlagValues, type EventsFlagValues, type Inputs } from '../../control/runtime/setup.js';
import { buildSummary, formatSummary, nothingDecided, readCounters } from '../../control/runtime/summary.js';
import { MemorySink, openBytes } from '../../traces/memory.js';
import { renderReport } from '../report/render.js';

/** package.json's version, put in by web/playground/build.ts. */
declare const SVCPATH_VERSION: string;

type Settings = DatapathFlagValues & EventsFlagValues;

interface Capture {
  name: string;
  bytes: Uint8Array<ArrayBuffer>;
}

/** What the user gave: the files as `svcpath replay` would be given them. */
const picked: { capture?: Capture; manifests: ManifestText[]; events?: ManifestText } = { manifests: [] };

/** The outputs' names, as --out and --verdicts would name them. */
const OUT = 'output.pcap';
const VERDICTS = 'verdicts.jsonl';

/** The settings of the form, in the order the command line gives them; text fields by their flag's name. */
const TEXT_SETTINGS = [
  'cluster-cidr',
  'maglev-table-size',
  'min-sync-period',
  'nodeport-addresses',
  'masquerade-address',
  'snat-port-range',
  'ct-entries',
  'service-cluster-ip-range',
  'service-node-port-range',
  'seed',
  'max-endpoints-per-slice',
] as const;
const BOOLEAN_SETTINGS = ['masquerade-all', 'strict'] as const;

function element<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
}

const ui = {
  form: element<HTMLFormElement>('settings'),
  captureFile: element<HTMLInputElement>('capture-file'),
  manifestFiles: element<HTMLInputElement>('manifest-files'),
  eventsFile: element<HTMLInputElement>('events-file'),
  captureName: element<HTMLOutputElement>('capture-name'),
  manifestNames: element<HTMLOutputElement>('manifest-names'),
  eventsName: element<HTMLOutputElement>('events-name'),
  eventsClear: element<HTMLButtonElement>('events-clear'),
  sample: element<HTMLButtonElement>('sample'),
  node: element<HTMLSelectElement>('node'),
  semantics: element<HTMLSelectElement>('datapath-semantics'),
  run: element<HTMLButtonElement>('run'),
  stop: element<HTMLButtonElement>('stop'),
  status: element<HTMLElement>('status'),
  error: element<HTMLElement>('error'),
  result: element<HTMLElement>('result'),
  command: element<HTMLElement>('command'),
  downloads: element<HTMLElement>('downloads'),
  warnings: element<HTMLElement>('warnings'),
  summary: element<HTMLElement>('summary'),
  report: element<HTMLElement>('report'),
};

/** The datapath, compiled once from the build's datapath.wasm, served beside the page. */
const datapath = WebAssembly.compileStreaming(fetch('datapath.wasm'));

// ---------------------------------------------------------------------------
// Inputs

/** Classic pcap (either byte order, micro- or nanoseconds), pcapng, gzip: a capture whatever its name. */
const CAPTURE_MAGICS = ['a1b2c3d4', 'd4c3b2a1', 'a1b23c4d', '4d3cb2a1', '0a0d0d0a'];
const isCapture = (bytes: Uint8Array) =>
  (bytes[0] === 0x1f && bytes[1] === 0x8b) ||
  CAPTURE_MAGICS.includes(Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(''));
/** kubectl --output-watch-events -o json prints JSON objects with an event type near their start (`ts` puts a time before each line). */
const isEvents = (text: string) => /^\s*([\d.]+\s+)?\{/.test(text) && /"type"\s*:\s*"(ADDED|MODIFIED|DELETED)"/.test(text);

/** Files given otherwise than by a file input: the input no longer shows what was picked through it. */
function forget(input: HTMLInputElement, file: File | undefined): void {
  if (!input.files || ![...input.files].includes(file as File)) input.value = '';
}

async function setCapture(file: File): Promise<void> {
  forget(ui.captureFile, file);
  picked.capture = { name: file.name, bytes: new Uint8Array(await file.arrayBuffer()) };
  ui.captureName.value = file.name;
}

async function setManifests(files: readonly File[]): Promise<void> {
  forget(ui.manifestFiles, files[0]);
  picked.manifests = await Promise.all(files.map(async (f) => ({ name: f.name, text: await f.text() })));
  ui.manifestNames.value = picked.manifests.map((m) => m.name).join(', ') || 'none';
  fillNodes();
}

async function setEvents(file: File | undefined): Promise<void> {
  forget(ui.eventsFile, file);
  picked.events = file && { name: file.name, text: await file.text() };
  ui.eventsName.value = picked.events?.name ?? 'none';
  ui.eventsClear.hidden = !picked.events;
  // As the CLI's: the semantics and the sync period say how changes apply, so they come with events only.
  for (const field of [ui.semantics, ui.form.elements.namedItem('min-sync-period') as HTMLInputElement]) field.disabled = !picked.events;
}

/** Files dropped anywhere: captures by their magic, watch events by their start, the rest as manifests. */
async function dropped(files: readonly File[]): Promise<void> {
  const manifests: File[] = [];
  for (const file of files) {
    if (isCapture(new Uint8Array(await file.slice(0, 4).arrayBuffer()))) await setCapture(file);
    else if (isEvents(await file.slice(0, 512).text())) await setEvents(file);
    else manifests.push(file);
  }
  if (manifests.length > 0) await setManifests(manifests);
}

/** The Nodes of the manifests, for --node; the one chosen stays chosen while it is there. */
function fillNodes(): void {
  const chosen = ui.node.value;
  let names: string[] = [];
  clearError();
  if (picked.manifests.length > 0) {
    try {
      names = parseClusterState(picked.manifests).nodes.map((n) => n.name);
    } catch (e) {
      showError(e);
    }
  }
  const options = names.map((name) => new Option(name, name, false, name === chosen));
  if (names.length === 0) options.push(new Option(picked.manifests.length > 0 ? '(the state has no Nodes)' : '(no manifests yet)', ''));
  ui.node.replaceChildren(...options);
}

async function openSample(): Promise<void> {
  const [capture, cluster] = await Promise.all(['samples/sample.pcap', 'samples/cluster.yaml'].map((url) => fetch(url)));
  if (!capture.ok || !cluster.ok) throw new Error('the bundled sample is missing from the build');
  picked.capture = { name: 'sample.pcap', bytes: new Uint8Array(await capture.arrayBuffer()) };
  ui.captureName.value = 'sample.pcap';
  forget(ui.captureFile, undefined);
  forget(ui.manifestFiles, undefined);
  await setEvents(undefined);
  picked.manifests = [{ name: 'cluster.yaml', text: await cluster.text() }];
  ui.manifestNames.value = 'cluster.yaml';
  fillNodes();
}

// ---------------------------------------------------------------------------
// Settings

/** The form as parseArgs would give the flags: a field left empty is a flag not given. */
function settings(): Settings {
  const values: Settings = {};
  const field = (name: string) => ui.form.elements.namedItem(name) as HTMLInputElement;
  if (ui.node.value) values.node = ui.node.value;
  if (!ui.semantics.disabled && ui.semantics.value) values['datapath-semantics'] = ui.semantics.value;
  for (const name of TEXT_SETTINGS) {
    const input = field(name);
    if (!input.disabled && input.value.trim() !== '') values[name] = input.value.trim();
  }
  for (const name of BOOLEAN_SETTINGS) if (field(name).checked) values[name] = true;
  return values;
}

/** The flags of `svcpath replay` (or trace) that make the same run from files of the same names. */
function argvOf(capture: string, values: Settings, outputs: string[]): string[] {
  const argv = [capture, ...picked.manifests.flatMap((m) => ['--cluster', m.name])];
  if (picked.events) argv.push('--events', picked.events.name);
  for (const [flag, value] of Object.entries(values)) argv.push(...(value === true ? [`--${flag}`] : [`--${flag}`, String(value)]));
  return [...argv, ...outputs];
}

// ---------------------------------------------------------------------------
// Running

let running: AbortController | undefined;
let downloadUrls: string[] = [];

async function run(): Promise<void> {
  const capture = picked.capture;
  if (!capture) throw new InputError('give a capture first (or open the bundled sample)');
  if (picked.manifests.length === 0) throw new InputError('give the manifests of the cluster state first (--cluster)');
  // A run that fails before it has a result leaves none of the last one's in view.
  ui.result.hidden = ui.report.hidden = true;
  const values = settings();
  const events = picked.events;
  const manifests = picked.manifests;
  // What the CLI prints on stderr as it reads: the API server's objections that are not errors.
  const warnings: string[] = [];
  const inputs: Inputs = {
    manifests: {
      count: manifests.length,
      load: (opts) => {
        const state = parseClusterState(manifests, opts);
        warnings.push(...(state.warnings ?? []));
        return state;
      },
    },
    events: events && {
      name: events.name,
      read: (initial, opts) => {
        const read = parseEvents(events.text, events.name, initial, opts);
        warnings.push(...read.warnings);
        return read;
      },
    },
    module: await datapath,
  };
  const { state, resolved, compiled, dp, changes, eventsError } = await buildReplayDatapath(values, inputs);
  const live = () => changes?.live.compiled ?? compiled;
  const source = await openBytes(capture.name, capture.bytes);
  const out = new MemorySink(OUT);
  const verdicts = new MemorySink(VERDICTS);
  const report = new ReportCollector(dp, live, { traceCommand: commandLine('trace', argvOf(capture.name, values, [])) });
  running = new AbortController();
  ui.stop.hidden = false;
  const result = await replay(source, compiled, dp, {
    out,
    verdicts,
    changes,
    report,
    signal: running.signal,
    onProgress: (done, total, packets) => {
      ui.status.textContent = `${packets} packets${total ? `, ${Math.floor((100 * done) / total)}%` : ''}`;
    },
  });
  const notes = [...state.notes, ...resolved.notes, ...compiled.notes, ...result.notes];
  const timeline = changes && timelineOf(changes);
  const summary = buildSummary(result, live(), readCounters(dp, live()), notes, state.warnings, timeline);
  const argv = argvOf(capture.name, values, ['--out', OUT, '--verdicts', VERDICTS]);
  ui.command.textContent = commandLine('replay', argv);
  ui.warnings.textContent = warnings.map((w) => `svcpath: warning: ${w}\n`).join('');
  ui.warnings.hidden = warnings.length === 0;
  ui.summary.textContent = formatSummary(summary);
  offerDownloads(verdicts, out);
  renderReport(ui.report, {
    format: REPORT_FORMAT,
    generator: `svcpath ${SVCPATH_VERSION}`,
    command: commandLine('replay', argv),
    run: report.finish(summary, timeline),
  });
  ui.result.hidden = ui.report.hidden = false;
  ui.status.textContent = result.interrupted ? `stopped after ${result.packets} packets` : `${result.packets} packets replayed`;
  // As the CLI: what was processed before a bad record is shown, and the record's mistake is the one line.
  const mistake = result.stoppedAt?.error ?? eventsError?.message ?? nothingDecided(result, summary);
  if (mistake) showError(mistake);
}

function offerDownloads(verdicts: MemorySink, out: MemorySink): void {
  for (const url of downloadUrls) URL.revokeObjectURL(url);
  const link = (sink: MemorySink, name: string, type: string) => {
    const url = URL.createObjectURL(new Blob([...sink.chunks()], { type }));
    downloadUrls.push(url);
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.textContent = name;
    return a;
  };
  downloadUrls = [];
  const bytes = out.bytes();
  // The input may mix link types, for which the output is pcapng whatever its name (the summary's notes say so).
  const pcapng = bytes[0] === 0x0a && bytes[1] === 0x0d && bytes[2] === 0x0d && bytes[3] === 0x0a;
  ui.downloads.replaceChildren(
    'Download: ',
    link(verdicts, VERDICTS, 'application/jsonl'),
    ' ',
    link(out, pcapng ? 'output.pcapng' : OUT, 'application/vnd.tcpdump.pcap'),
  );
}

// ---------------------------------------------------------------------------
// Errors

/** A user's mistake as the CLI prints it: one line; anything else is a bug, also logged. */
function showError(e: unknown): void {
  const message = typeof e === 'string' ? e : isInputError(e) ? e.message : `internal error: ${(e as Error).message ?? e}`;
  if (typeof e !== 'string' && !isInputError(e)) console.error(e);
  ui.error.textContent = `svcpath: ${message}`;
  ui.error.hidden = false;
}

function clearError(): void {
  ui.error.textContent = '';
  ui.error.hidden = true;
}

/** Runs an action of the page with its mistakes shown, the buttons off meanwhile. */
async function guarded(action: () => Promise<void>): Promise<void> {
  clearError();
  ui.run.disabled = ui.sample.disabled = true;
  try {
    await action();
  } catch (e) {
    showError(e);
    ui.status.textContent = '';
  } finally {
    ui.run.disabled = ui.sample.disabled = false;
    ui.stop.hidden = true;
    running = undefined;
  }
}

// ---------------------------------------------------------------------------
// Wiring

const firstFile = (input: HTMLInputElement) => input.files?.[0];
ui.captureFile.addEventListener('change', () => {
  const file = firstFile(ui.captureFile);
  if (file) void guarded(() => setCapture(file));
});
ui.manifestFiles.addEventListener('change', () => void guarded(() => setManifests([...(ui.manifestFiles.files ?? [])])));
ui.eventsFile.addEventListener('change', () => void guarded(() => setEvents(firstFile(ui.eventsFile))));
ui.eventsClear.addEventListener('click', () => void guarded(() => setEvents(undefined)));
ui.sample.addEventListener('click', () => void guarded(openSample));
ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  ui.status.textContent = 'running';
  void guarded(run);
});
ui.stop.addEventListener('click', () => running?.abort('stopped'));
document.addEventListener('dragover', (event) => {
  event.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', (event) => {
  if (event.relatedTarget === null) document.body.classList.remove('dragging');
});
document.addEventListener('drop', (event) => {
  event.preventDefault();
  document.body.classList.remove('dragging');
  void guarded(() => dropped([...(event.dataTransfer?.files ?? [])]));
});
void setEvents(undefined);
fillNodes();
