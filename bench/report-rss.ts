/**
 * Preloaded into a child process with `node --import` by the memory
 * scenario: reports the process's peak resident set size on exit.
 */
process.on('exit', () => {
  process.stderr.write(`maxRSS ${process.resourceUsage().maxRSS}\n`);
});
