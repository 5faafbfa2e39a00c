/** Where svcpath's own files are, whether it runs from control/ (tests) or dist/control/ (CLI). */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findProjectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('svcpath: cannot find its package root');
    dir = parent;
  }
  return dir;
}

export const PROJECT_ROOT = findProjectRoot();
export const DATAPATH_WASM = join(PROJECT_ROOT, 'build', 'datapath.wasm');
/** The thread a sharded replay runs per worker; always the built one, as worker threads run JavaScript. */
export const REPLAY_WORKER = join(PROJECT_ROOT, 'dist', 'control', 'replay-worker.js');
