/**
 * Warnings: what the API server would refuse but a datapath still programs.
 * Each is the one-line message the error would have had (file, object, field,
 * problem) followed by what svcpath does instead; with --strict the first one
 * is thrown as that error, for people who validate hand-written manifests.
 */
import { inputError } from '../common/errors.js';

export class Warnings {
  readonly messages: string[] = [];

  constructor(private readonly strict = false) {}

  add(where: Array<string | undefined>, problem: string): void {
    const error = inputError(where, problem);
    if (this.strict) throw error;
    this.messages.push(error.message);
  }
}
