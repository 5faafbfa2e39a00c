/**
 * Builds the playground (web/playground/README.md) into a folder to serve:
 * main.ts bundled by esbuild with the control plane it shares with the CLI
 * (Node's modules that shared code imports but a page never calls replaced
 * by web/playground/shims/), the page and its styles, the report's styles
 * (uPlot's and web/report/style.css), the datapath (build/datapath.wasm) and
 * the bundled sample (traces/samples/sample.pcap and cluster.yaml).
 * `node dist/web/playground/build.js [DIR]` (default build/playground/).
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { DATAPATH_WASM, PROJECT_ROOT } from '../../control/common/paths.js';

export const PLAYGROUND_DIR = join(PROJECT_ROOT, 'build', 'playground');

const SOURCE = join(PROJECT_ROOT, 'web', 'playground');

/** Node's modules the shared code imports, each with its stand-in; what each stands in for is said in the shim. */
const SHIMS: Record<string, string> = {
  'node:fs': 'node-fs.ts',
  'node:net': 'node-net.ts',
  'node:os': 'node-os.ts',
  'node:path': 'node-path.ts',
  'node:timers/promises': 'node-timers-promises.ts',
  'node:tty': 'node-tty.ts',
  'node:url': 'node-url.ts',
  'node:worker_threads': 'node-worker-threads.ts',
};

function version(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** Builds the playground into `dir`; returns it. */
export async function buildPlayground(dir = PLAYGROUND_DIR): Promise<string> {
  if (!existsSync(DATAPATH_WASM)) throw new Error(`${DATAPATH_WASM} is missing: run npm run build:wasm`);
  mkdirSync(join(dir, 'samples'), { recursive: true });
  await build({
    entryPoints: [join(SOURCE, 'main.ts')],
    outfile: join(dir, 'main.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    sourcemap: true,
    alias: Object.fromEntries(Object.entries(SHIMS).map(([module, shim]) => [module, join(SOURCE, 'shims', shim)])),
    define: { SVCPATH_VERSION: JSON.stringify(version()) },
    logLevel: 'warning',
  });
  for (const file of ['index.html', 'style.css']) copyFileSync(join(SOURCE, file), join(dir, file));
  const reportCss = [
    join(PROJECT_ROOT, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'),
    join(PROJECT_ROOT, 'web', 'report', 'style.css'),
  ];
  writeFileSync(join(dir, 'report.css'), reportCss.map((file) => readFileSync(file, 'utf8')).join('\n'));
  copyFileSync(DATAPATH_WASM, join(dir, 'datapath.wasm'));
  for (const file of ['sample.pcap', 'cluster.yaml'])
    copyFileSync(join(PROJECT_ROOT, 'traces', 'samples', file), join(dir, 'samples', file));
  return dir;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const dir = await buildPlayground(process.argv[2] === undefined ? undefined : resolve(process.argv[2]));
  console.log(`playground built in ${dir}`);
}
