/**
 * Serves the built playground (web/playground/build.ts) on 127.0.0.1: a
 * static server of one folder, with the content types a page needs
 * (application/wasm for WebAssembly.compileStreaming), no caching, and a
 * content security policy that lets the page fetch nothing but its own
 * assets. `npm run playground [-- --port N]` builds and runs it; the port is
 * --port, else $PORT, else 8080 (taken: the next free one, said).
 */
import { readFile, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { buildPlayground, PLAYGROUND_DIR } from './build.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.pcap': 'application/vnd.tcpdump.pcap',
  '.yaml': 'text/yaml; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
};

/**
 * Only this origin, for scripts, styles, fetches and images: a page that
 * tried to send a file elsewhere would be stopped by the browser. WebAssembly
 * needs 'wasm-unsafe-eval'; uPlot sizes its elements with inline styles.
 */
const CSP = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface Serving {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Serves `root` on 127.0.0.1:`port` (0: any free port); rejects with EADDRINUSE when the port is taken. */
export function startServer(port: number, root = PLAYGROUND_DIR): Promise<Serving> {
  const server = createServer(async (req, res) => {
    const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'Content-Security-Policy': CSP };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    const file = fileFor(root, req.url ?? '/');
    const type = file && TYPES[extname(file)];
    try {
      if (!file || !type || !(await stat(file)).isFile()) throw new Error('not served');
      const body = await readFile(file);
      res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    } catch {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end('not found\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const bound = (server.address() as AddressInfo).port;
      resolve({
        server,
        port: bound,
        url: `http://127.0.0.1:${bound}/`,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}

/** The file a request's path names inside `root`, or undefined when it would leave it. */
function fileFor(root: string, url: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(new URL(url, 'http://localhost').pathname);
  } catch {
    return undefined;
  }
  if (path.endsWith('/')) path += 'index.html';
  const file = normalize(join(root, path));
  return file.startsWith(root + sep) ? file : undefined;
}

/** Ports tried after a default port that is taken. */
const TRIES = 20;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { port: { type: 'string' } } });
  const asked = values.port ?? process.env.PORT;
  if (asked !== undefined && !/^\d+$/.test(asked)) {
    console.error(`svcpath playground: --port: "${asked}" is not a port number`);
    return 1;
  }
  await buildPlayground();
  const first = asked === undefined ? 8080 : Number(asked);
  for (let port = first; port < first + (asked === undefined ? TRIES : 1); port++) {
    try {
      const { url } = await startServer(port);
      if (port !== first) console.log(`port ${first} is taken; serving on ${port}`);
      console.log(`svcpath playground: ${url} (Ctrl-C stops it)`);
      return 0;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
  console.error(
    asked === undefined
      ? `svcpath playground: ports ${first}-${first + TRIES - 1} are taken; choose one with --port N`
      : `svcpath playground: port ${first} is taken; choose another with --port N`,
  );
  return 1;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const status = await main();
  if (status !== 0) process.exit(status);
}
