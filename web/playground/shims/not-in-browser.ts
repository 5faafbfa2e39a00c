/**
 * What the shims of Node's modules (web/playground/README.md) stand in with:
 * a function the bundle holds because a shared module imports it, but which
 * the page never calls, since it reads and writes no files. Called anyway
 * (a bug), it says so instead of failing somewhere obscure; `new` too.
 */
export function notInBrowser(name: string): (...args: unknown[]) => never {
  return function stub(): never {
    throw new Error(`${name} is not in the browser: the playground reads no files and starts no threads`);
  };
}
