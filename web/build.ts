/**
 * `npm run build:web`: bundles the report page (web/report/page.ts, with
 * uPlot) into dist/web/report.js, one minified IIFE, and puts uPlot's CSS
 * and web/report/style.css into dist/web/report.css; control/cli/report-file.ts
 * inlines both into every HTML report. The browser files are not compiled
 * by tsc (only this script is); esbuild strips their types.
 */
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { PROJECT_ROOT } from '../control/common/paths.js';

const OUT = join(PROJECT_ROOT, 'dist', 'web');

function uplotVersion(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'node_modules', 'uplot', 'package.json'), 'utf8')) as { version: string }).version;
}

async function buildReport(): Promise<void> {
  mkdirSync(OUT, { recursive: true });
  await build({
    entryPoints: [join(PROJECT_ROOT, 'web', 'report', 'page.ts')],
    outfile: join(OUT, 'report.js'),
    bundle: true,
    format: 'iife',
    minify: true,
    target: 'es2020',
    // uPlot's MIT notice travels with every copy of it, inside each report.
    banner: { js: `/*! uPlot ${uplotVersion()} (c) Leon Sorokin, MIT License, https://github.com/leeoniya/uPlot */` },
    logLevel: 'warning',
  });
  const css = [join(PROJECT_ROOT, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'), join(PROJECT_ROOT, 'web', 'report', 'style.css')]
    .map((file) => readFileSync(file, 'utf8'))
    .join('\n');
  writeFileSync(join(OUT, 'report.css'), css);
  const size = (file: string) => `${(statSync(join(OUT, file)).size / 1024).toFixed(1)} KiB`;
  console.log(`dist/web/report.js ${size('report.js')}, dist/web/report.css ${size('report.css')}`);
}

await buildReport();
