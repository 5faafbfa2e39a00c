// The layering of ARCHITECTURE.md, enforced: data flows one way, from files
// to cluster state to map entries to the datapath and its outputs, and a
// folder imports only from its own stage or those below it. Siblings on one
// layer (the reference model and the runtime, say) never import each other,
// so no two folders lean on each other and each can be read alone.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../control/common/paths.js';

/** The layers, lowest first. A folder's files may import from their own folder and from lower layers. */
const LAYERS: ReadonlyArray<readonly string[]> = [
  ['traces'],
  ['control/common'],
  ['control/cluster'],
  ['control/discovery', 'control/compile'],
  ['model', 'control/runtime'],
  ['control/cli', 'web'],
  ['traces/synth'],
  ['bench', 'test'],
];

/** The TypeScript folders the layers cover (datapath/ is AssemblyScript, built on its own). */
const ROOTS = ['control', 'traces', 'model', 'web', 'bench', 'test'];

/** The layered folder a file belongs to: the longest folder of LAYERS it lies in. */
function folderOf(file: string): string | undefined {
  return LAYERS.flat()
    .filter((folder) => file.startsWith(`${folder}/`))
    .sort((a, b) => b.length - a.length)[0];
}

function layerOf(folder: string): number {
  return LAYERS.findIndex((layer) => layer.includes(folder));
}

interface Import {
  from: string;
  to: string;
}

/** What is wrong with an import, if anything. */
function violation({ from, to }: Import): string | undefined {
  const [source, target] = [folderOf(from), folderOf(to)];
  if (!source) return `${from} lies in no layered folder`;
  if (!target) return `${from} imports ${to}, which lies in no layered folder`;
  if (source === target) return undefined;
  const [below, above] = [layerOf(target), layerOf(source)];
  if (below < above) return undefined;
  if (below === above) return `${from} imports ${to}: ${source}/ and ${target}/ are siblings on one layer and never import each other`;
  if (above === 0) return `${from} imports ${to}: ${source}/ is the bottom layer and imports nothing outside itself`;
  return `${from} imports ${to}: ${source}/ may import only from ${LAYERS.slice(0, above).flat().join(', ')}`;
}

function typescriptFiles(dir: string): string[] {
  return readdirSync(join(PROJECT_ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return entry.name === 'corpus' || entry.name === 'fixtures' ? [] : typescriptFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative import of the tree's TypeScript (static, dynamic and type-only), resolved to the file it names. */
function importsOfTree(): Import[] {
  return ROOTS.flatMap(typescriptFiles).flatMap((from) => {
    const { importedFiles } = ts.preProcessFile(readFileSync(join(PROJECT_ROOT, from), 'utf8'), true, true);
    return importedFiles
      .filter(({ fileName }) => fileName.startsWith('.'))
      .map(({ fileName }) => ({ from, to: normalize(join(dirname(from), fileName)).replace(/\.js$/, '.ts') }));
  });
}

describe('layering', () => {
  const imports = importsOfTree();

  it('finds the imports it judges', () => {
    expect(imports.length).toBeGreaterThan(300);
    for (const folder of LAYERS.flat())
      expect(
        imports.some(({ from }) => folderOf(from) === folder),
        folder,
      ).toBe(true);
    for (const { to } of imports) expect(relative(PROJECT_ROOT, join(PROJECT_ROOT, to)).startsWith('..'), to).toBe(false);
  });

  it('no import runs to a higher layer or a sibling folder', () => {
    expect(imports.map(violation).filter(Boolean)).toEqual([]);
  });

  it('tells each kind of forbidden import', () => {
    expect(violation({ from: 'traces/pcap.ts', to: 'control/common/errors.ts' })).toBe(
      'traces/pcap.ts imports control/common/errors.ts: traces/ is the bottom layer and imports nothing outside itself',
    );
    expect(violation({ from: 'control/compile/compiler.ts', to: 'control/runtime/datapath.ts' })).toMatch(
      /may import only from traces, control\/common, control\/cluster$/,
    );
    expect(violation({ from: 'model/tables.ts', to: 'control/runtime/loader.ts' })).toMatch(/siblings on one layer/);
    expect(violation({ from: 'traces/frames.ts', to: 'traces/synth/sample.ts' })).toMatch(/traces\/ is the bottom layer/);
    expect(violation({ from: 'traces/synth/sample.ts', to: 'control/cli/main.ts' })).toBeUndefined();
    expect(violation({ from: 'control/cli/main.ts', to: 'control/cli/args.ts' })).toBeUndefined();
  });
});
