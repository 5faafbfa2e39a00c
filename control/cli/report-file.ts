/**
 * Writes an HTML report (--report FILE.html): the run's data and the page
 * built by `npm run build:web` (dist/web/report.js and report.css), in one
 * self-contained file, replaced atomically; `-` is standard output.
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { writeOutputFile } from '../../traces/chunked.js';
import { InputError } from '../common/errors.js';
import { PROJECT_ROOT } from '../common/paths.js';
import { type ReportAssets, reportHtml } from '../runtime/report-html.js';
import type { ReportData } from '../runtime/report-types.js';

const ASSETS = { script: join(PROJECT_ROOT, 'dist', 'web', 'report.js'), css: join(PROJECT_ROOT, 'dist', 'web', 'report.css') };

/** The built page; call it before a long replay to refuse --report at once when the page is not built. */
export function readReportAssets(): ReportAssets {
  const read = (file: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      throw new InputError(`--report: the report page is not built (no ${relative(PROJECT_ROOT, file)}): run npm run build`);
    }
  };
  return { script: read(ASSETS.script), css: read(ASSETS.css) };
}

export function writeReport(path: string, data: ReportData): void {
  writeOutputFile(path, reportHtml(data, readReportAssets()));
}
