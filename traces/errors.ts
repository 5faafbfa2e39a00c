/**
 * A mistake in a capture or a file the user named: a corrupt record, a
 * truncated header, a path that cannot be opened or written. The message is
 * one line, "file: record or block: field: problem", which the CLI prints as
 * it is. traces/ is the bottom layer and imports nothing of the control
 * plane, so it has its own error type; control/common/errors.ts counts it
 * among the user's mistakes (`isInputError`).
 */
export class CaptureError extends Error {
  override readonly name = 'CaptureError';
}

/** Builds the "file: where: field: problem" message of a CaptureError. */
export function captureError(where: Array<string | undefined>, problem: string): CaptureError {
  return new CaptureError([...where.filter((w): w is string => !!w), problem].join(': '));
}

/** Bytes as lowercase hex: for messages that quote them (a magic number), and as keys of JavaScript maps. */
export function hexOf(bytes: Uint8Array): string {
  let hex = '';
  for (const b of bytes) hex += HEX_BYTES[b];
  return hex;
}

const HEX_BYTES = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));
