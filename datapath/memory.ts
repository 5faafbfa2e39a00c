// Linear memory is carved out once, at set-up, by a bump reserver: maps and
// the batch area live at fixed addresses for the life of the instance, and
// nothing is ever allocated or freed while packets are processed (an XDP
// program cannot allocate either). The AssemblyScript runtime's allocator is
// not used at all, so there is no garbage collector to run behind our back.

let top: usize = (__heap_base + 15) & ~(<usize>15);

/** Reserves `bytes` zeroed bytes, 16-byte aligned; 0 when memory cannot grow. */
export function reserve(bytes: usize): usize {
  const start = top;
  const end = (start + bytes + 15) & ~(<usize>15);
  const have = <usize>memory.size() << 16;
  if (end > have) {
    const pages = <i32>((end - have + 0xffff) >>> 16);
    if (memory.grow(pages) < 0) return 0;
  }
  top = end;
  // Fresh pages are zero, but memory below `have` may have held frames
  // written by the host beyond the old top.
  if (start < have) memory.fill(start, 0, min(end, have) - start);
  return start;
}

/** First byte past everything reserved so far. */
export function reservedTop(): usize {
  return top;
}
