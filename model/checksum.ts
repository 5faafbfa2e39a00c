/**
 * Internet checksums (RFC 1071) over big-endian 16-bit words, and their
 * incremental update (RFC 1624), which is how the README says rewrites keep
 * checksums: a checksum that was wrong before a rewrite stays wrong by the
 * same amount, it is never recomputed.
 */

/** End-around-carry folding of a sum into 16 bits. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** One's-complement sum of `bytes` as big-endian words (an odd last byte is a high byte), folded. */
export function onesComplementSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1] << 8;
  return fold(sum);
}

/** The checksum to store for data whose one's-complement sum (checksum field zero) is `sum`. */
export function checksumOf(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit word changing from m to m'. */
function replaceWord(checksum: number, from: number, to: number): number {
  return ~fold((~checksum & 0xffff) + (~from & 0xffff) + to) & 0xffff;
}

/**
 * The checksum after the bytes `from` (an even number of them, at an even
 * offset of the checksummed data) became `to`, one word at a time. Grouping
 * the words differently gives the same bits: every positive sum folds to the
 * same representative in 1..0xffff.
 */
export function updateChecksum(checksum: number, from: Uint8Array, to: Uint8Array): number {
  for (let i = 0; i < from.length; i += 2) {
    checksum = replaceWord(checksum, (from[i] << 8) | from[i + 1], (to[i] << 8) | to[i + 1]);
  }
  return checksum;
}
