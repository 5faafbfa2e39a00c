// SCTP's checksum is a CRC32c over the whole SCTP packet (RFC 4960 §6.8,
// Appendix B), not an Internet checksum: it cannot be updated incrementally,
// and it does not cover the IP addresses. A port rewrite recomputes it, which
// needs every byte of the packet.

const CRC32C_POLY_REFLECTED: u32 = 0x82f63b78;
const table = memory.data(256 * 4);

for (let n: u32 = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = (c & 1) != 0 ? (c >>> 1) ^ CRC32C_POLY_REFLECTED : c >>> 1;
  store<u32>(table + (<usize>n << 2), c);
}

export const SCTP_CSUM: usize = 8;

/** Recomputes the CRC32c of the SCTP packet of `len` bytes at `sctp`. */
export function sctpUpdateChecksum(sctp: usize, len: u32): void {
  store<u32>(sctp + SCTP_CSUM, 0);
  let crc: u32 = 0xffffffff;
  for (let i: usize = 0; i < <usize>len; i++) {
    crc = load<u32>(table + (<usize>((crc ^ load<u8>(sctp + i)) & 0xff) << 2)) ^ (crc >>> 8);
  }
  // Stored least significant byte first (RFC 4960 Appendix B).
  store<u32>(sctp + SCTP_CSUM, ~crc);
}
