/**
 * Reading manifests: files and directories → the objects they hold, each
 * with where it came from. Nothing here knows what a Service is; this module
 * only turns bytes into mappings (YAML or JSON, several documents per file,
 * `kind: List` and typed `FooList` dumps flattened) and says precisely where
 * a file is broken.
 */
import { readdirSync, readFileSync, statSync, type Dirent, type Stats } from 'node:fs';
import { join } from 'node:path';
import { LineCounter, parseAllDocuments } from 'yaml';
import { inputError } from '../common/errors.js';

/** One Kubernetes object as parsed, not yet checked beyond being a mapping. */
export interface Manifest {
  file: string;
  /** Where the object sits in its file, for objects without a name: "document 3" or "items[3]". */
  position: string;
  object: Record<string, unknown>;
}

/** A manifest file already read: its name in messages, and its text. */
export interface ManifestText {
  name: string;
  text: string;
}

export interface ReadResult {
  manifests: Manifest[];
  /** YAML warnings (unresolved tags and the like): valid input, but probably not what was meant. */
  notes: string[];
}

const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'];

export function readManifests(paths: string[]): ReadResult {
  const result: ReadResult = { manifests: [], notes: [] };
  for (const file of paths.flatMap(manifestFiles)) parseFile(file, readText(file), result);
  return result;
}

/** Manifest files already read (the playground's), parsed as readManifests parses files, in the order given. */
export function parseManifests(files: readonly ManifestText[]): ReadResult {
  const result: ReadResult = { manifests: [], notes: [] };
  for (const { name, text } of files) parseFile(name, text, result);
  return result;
}

/**
 * The path itself when it is a file (hidden or not: it was named); for a
 * directory, every manifest below it in sorted order, hidden files and
 * directories (.git, .github, ...) left out.
 */
function manifestFiles(path: string): string[] {
  if (!stat(path).isDirectory()) return [path];
  const files = visibleEntries(path, '')
    .filter((entry) => MANIFEST_EXTENSIONS.some((ext) => entry.endsWith(ext)))
    .sort()
    .map((entry) => join(path, entry))
    .filter((file) => stat(file).isFile());
  if (files.length === 0) throw inputError([path], `no ${MANIFEST_EXTENSIONS.join(', ')} files in this directory`);
  return files;
}

/**
 * The entries below `root/relative` whose names do not start with a dot, as
 * paths relative to `root`. Written out because readdirSync's recursive mode
 * cannot prune: it would walk every object of a .git directory only for them
 * to be filtered out. Like it, this does not descend into symbolic links.
 */
function visibleEntries(root: string, relative: string): string[] {
  let entries: Dirent[];
  try {
    entries = readdirSync(join(root, relative), { withFileTypes: true });
  } catch (e) {
    throw inputError([join(root, relative)], fsProblem(e));
  }
  return entries
    .filter((entry) => !entry.name.startsWith('.'))
    .flatMap((entry) => {
      const path = relative ? join(relative, entry.name) : entry.name;
      return entry.isDirectory() ? visibleEntries(root, path) : [path];
    });
}

function readText(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw inputError([file], fsProblem(e));
  }
}

function parseFile(file: string, text: string, result: ReadResult): void {
  // JSON is YAML 1.2, so one parser serves both and reports positions the same way.
  // Merge keys (<<) are on because Kubernetes' YAML decoder accepts them.
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, merge: true, prettyErrors: false });
  docs.forEach((doc, i) => {
    const position = `document ${i + 1}`;
    const at = (offset: number) => {
      const { line, col } = lineCounter.linePos(offset);
      return `line ${line}, column ${col}`;
    };
    const [error] = doc.errors;
    if (error) throw inputError([file, at(error.pos[0])], error.message);
    for (const warning of doc.warnings) result.notes.push(`${file}: ${at(warning.pos[0])}: ${warning.message}`);
    let value: unknown;
    try {
      value = doc.toJS();
    } catch (e) {
      // Unresolved aliases and alias bombs surface only when the document is built.
      throw inputError([file, position], (e as Error).message);
    }
    if (value === null || value === undefined) return;
    if (isMapping(value) && value.apiVersion == null && value.kind == null) {
      // A Helm values.yaml, a CI workflow: YAML beside the manifests, not a mistake in one.
      result.notes.push(`${file}: ${position}: skipped: not a Kubernetes object: no apiVersion or kind`);
      return;
    }
    addObject(file, position, value, result.manifests);
  });
}

/**
 * Adds one document's object, or the items of a list: a `kind: List` (what
 * `kubectl get -o yaml` prints for several objects), whose items carry their
 * own kind, or a typed list such as ServiceList (what `kubectl get --raw` and
 * client libraries return), whose items may leave out the kind and apiVersion
 * the list names.
 */
function addObject(file: string, position: string, value: unknown, out: Manifest[]): void {
  if (!isMapping(value)) {
    throw inputError([file, position], `expected a Kubernetes object (a mapping), got ${describe(value)}`);
  }
  const { kind, items } = value;
  if (typeof kind === 'string' && kind.endsWith('List') && 'items' in value) {
    if (items === null) return;
    if (!Array.isArray(items)) throw inputError([file, position, 'items'], `must be a list, got ${describe(items)}`);
    items.forEach((item, i) => addObject(file, `items[${i}]`, typedListItem(kind, value.apiVersion, item), out));
    return;
  }
  out.push({ file, position, object: value });
}

/** An item of a typed list with the kind and apiVersion it leaves to the list; any other item as it is. */
function typedListItem(listKind: string, listApiVersion: unknown, item: unknown): unknown {
  if (listKind === 'List' || !isMapping(item) || item.kind != null) return item;
  return { ...item, kind: listKind.slice(0, -'List'.length), apiVersion: item.apiVersion ?? listApiVersion };
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isMapping(value)) return 'a mapping';
  return JSON.stringify(value) ?? String(value);
}

function stat(path: string): Stats {
  try {
    return statSync(path);
  } catch (e) {
    throw inputError([path], fsProblem(e));
  }
}

function fsProblem(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file or directory';
  if (code === 'EACCES') return 'permission denied';
  return (e as Error).message;
}
