// Internet checksums. Rewrites update checksums incrementally (RFC 1624,
// eqn. 3: HC' = ~(~HC + ~m + m')), as bpf_l3_csum_replace/bpf_l4_csum_replace
// do, so a frame whose checksum was already wrong (checksum offload on the
// capturing host) stays wrong by exactly the same amount: we never "repair"
// what we did not verify. Only freshly built headers get a full checksum.
//
// One's-complement sums do not depend on byte order (RFC 1071 §2(B)), so all
// arithmetic here works on 16-bit words loaded little-endian straight from
// the packet and stores them back the same way.

@inline function fold(sum: u32): u16 {
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  return <u16>sum;
}

/** Updates the checksum at `field` for a 16-bit word changing from `from` to `to`. */
@inline export function csumReplace2(field: usize, from: u16, to: u16): void {
  const sum = <u32>(~load<u16>(field) & 0xffff) + <u32>(~from & 0xffff) + <u32>to;
  store<u16>(field, ~fold(sum));
}

/** Updates the checksum at `field` for a 32-bit value changing from `from` to `to`. */
@inline export function csumReplace4(field: usize, from: u32, to: u32): void {
  const sum = <u32>(~load<u16>(field) & 0xffff)
    + (~from & 0xffff) + (~from >>> 16)
    + (to & 0xffff) + (to >>> 16);
  store<u16>(field, ~fold(sum));
}

/** One's-complement sum of `len` bytes at `ptr`, added to `initial`, not folded. */
export function csumAdd(ptr: usize, len: usize, initial: u32): u32 {
  let sum: u64 = initial;
  let i: usize = 0;
  for (; i + 1 < len; i += 2) sum += load<u16>(ptr + i);
  // An odd last byte is the high byte of a big-endian word: the low byte of
  // a little-endian one.
  if (i < len) sum += load<u8>(ptr + i);
  sum = (sum & 0xffffffff) + (sum >>> 32);
  return <u32>((sum & 0xffffffff) + (sum >>> 32));
}

/** The checksum to store for `len` bytes whose checksum field is zero. */
export function csumFinish(sum: u32): u16 {
  return ~fold(sum);
}
