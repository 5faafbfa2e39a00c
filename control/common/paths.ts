/**
 * Where svcpath's own files are, whether it runs from control/ (tests) or
 * dist/control/ (CLI); and which paths the user named are the same file.
 */
import { existsSync, fstatSync, readFileSync, statSync, type Stats } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import { resolvedPath } from '../../traces/chunked.js';
import { InputError } from './errors.js';

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
/** package.json's version, read at run time so that it cannot drift from the package. */
export function svcpathVersion(): string {
  return (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The thread a sharded replay runs per worker; always the built one, as worker threads run JavaScript. */
export const REPLAY_WORKER = join(PROJECT_ROOT, 'dist', 'control', 'runtime', 'replay-worker.js');

/** A path the user named, and the flag (or role) that named it; `-` is standard input or output. */
export interface NamedPath {
  flag: string;
  path: string;
}

/** What a path is on disk: its real path, and its device and inode when it exists. */
interface Identity {
  real?: string;
  inode?: string;
  directory: boolean;
  /** Exists and is neither a regular file nor a directory (/dev/null, a FIFO): written in place, never replaced. */
  special: boolean;
}

function identify(path: string): Identity {
  if (path === '-') {
    // Standard input redirected from a file is that file.
    const stats = fstatSync(0);
    return { inode: stats.isFile() ? `${stats.dev}:${stats.ino}` : undefined, directory: false, special: !stats.isFile() };
  }
  const absolute = resolve(path);
  let stats: Stats | undefined;
  try {
    stats = statSync(absolute);
  } catch {
    // Not there yet: compared by where it would be.
  }
  return {
    real: resolvedPath(absolute),
    inode: stats ? `${stats.dev}:${stats.ino}` : undefined,
    directory: stats?.isDirectory() ?? false,
    special: !!stats && !stats.isFile() && !stats.isDirectory(),
  };
}

const samePath = (a: Identity, b: Identity) =>
  (a.inode !== undefined && a.inode === b.inode) || (a.real !== undefined && a.real === b.real);

/**
 * Refuses, before anything is opened for writing, an output that would
 * destroy what svcpath reads or writes: an input (the capture, standard
 * input's file, a cluster file), a file inside a directory that is read (a
 * cluster directory, a test case), or another output. Paths are compared by
 * real path and, for files that exist, by device and inode, so a symbolic or
 * hard link to an input is that input. Several outputs may name one device
 * (/dev/null), not one file. At most one output goes to standard output, and
 * `binary` ones (captures) not to a terminal, as tcpdump -w - refuses.
 */
export function checkOutputs(outputs: NamedPath[], inputs: NamedPath[], binary: string[] = []): void {
  const toStdout = outputs.filter((o) => o.path === '-');
  if (toStdout.length > 1) fail(`${toStdout.map((o) => `${o.flag} -`).join(' and ')}: only one output can go to standard output`);
  for (const o of toStdout) {
    if (binary.includes(o.flag) && isatty(1)) {
      fail(`${o.flag} -: standard output is a terminal, and a capture is binary: redirect it to a file or pipe it to a program`);
    }
  }
  const files = outputs.filter((o) => o.path !== '-').map((o) => ({ ...o, id: identify(o.path) }));
  const read = inputs.map((i) => ({ ...i, id: identify(i.path) }));
  for (const [k, o] of files.entries()) {
    if (o.id.directory) fail(`${o.flag} ${o.path}: is a directory`);
    for (const i of read) {
      const shown = i.path === '-' ? 'standard input' : i.path;
      if (samePath(o.id, i.id))
        fail(
          `${o.flag} ${o.path}: is ${i.flag === 'capture' ? 'the capture' : `the ${i.flag} file`} ${shown}, which svcpath reads; an output never overwrites an input`,
        );
      if (i.id.directory && o.id.real?.startsWith(i.id.real + sep)) {
        fail(`${o.flag} ${o.path}: is inside ${i.path} (${i.flag}), a directory svcpath reads; write it elsewhere`);
      }
    }
    for (const other of files.slice(0, k)) {
      if (samePath(o.id, other.id) && !(o.id.special && other.id.special))
        fail(`${o.flag} ${o.path}: is also the output of ${other.flag} (${other.path}); each output needs its own file`);
    }
  }
}

function fail(message: string): never {
  throw new InputError(message);
}
