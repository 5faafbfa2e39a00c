import { CaptureError } from '../../traces/errors.js';

/**
 * A mistake in what the user gave us (a manifest, a capture file, a flag).
 *
 * The message is one line that names where the problem is — file, then the
 * record or object, then the field — so the CLI can print it as it is, with
 * no stack trace. Anything else thrown is a bug in svcpath.
 */
export class InputError extends Error {
  override readonly name = 'InputError';
}

/** Builds the "file: object: field: problem" message of an InputError. */
export function inputError(where: Array<string | undefined>, problem: string): InputError {
  return new InputError([...where.filter((w): w is string => !!w), problem].join(': '));
}

/**
 * Whether `e` is the user's mistake, whose message is the one line to print:
 * an InputError, or a CaptureError from the capture and file layer (traces/).
 * Anything else is a bug in svcpath.
 */
export function isInputError(e: unknown): e is InputError | CaptureError {
  return e instanceof InputError || e instanceof CaptureError;
}
