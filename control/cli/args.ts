/**
 * Flag parsing for every svcpath command: node:util's parseArgs, strict, with
 * `-h`/`--help` added, and its errors turned into one line that names the
 * command and the flag — an unknown flag with the closest one the command has.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InputError } from '../common/errors.js';
import { closest, didYouMean } from '../common/suggest.js';

type Options = NonNullable<ParseArgsConfig['options']>;

const HELP_FLAG = { help: { type: 'boolean', short: 'h' } } as const;

/** `command` names the flags' source in messages: "replay", or a case's args file. */
export function parseCommandArgs<O extends Options>(command: string, argv: string[], options: O) {
  const all = { ...options, ...HELP_FLAG };
  try {
    return parseArgs({ args: argv, options: all, strict: true, allowPositionals: true });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw e;
    throw new InputError(`${command}: ${flagProblem(argv, all, e as Error)}`);
  }
}

/**
 * What is wrong with the flags, found again in parseArgs' tokens: its own
 * messages are several lines long and say nothing of the flag meant.
 */
function flagProblem(argv: string[], options: Options, error: Error): string {
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const spec = options[token.name];
    const flag = token.rawName;
    if (!spec) return `unknown flag ${flag}${didYouMean(suggestFlags(token.name, options))}`;
    if (spec.type === 'boolean' && token.inlineValue) return `${flag} takes no value (got "${token.value}")`;
    if (spec.type === 'string' && token.value === undefined) return `${flag} needs a value`;
    // parseArgs will not take a value that looks like a flag unless it is attached with "=".
    if (spec.type === 'string' && !token.inlineValue && token.value && token.value.length > 1 && token.value.startsWith('-')) {
      return `${flag} needs a value (${token.value} looks like a flag; if it is the value, write ${flag}=${token.value})`;
    }
  }
  return error.message.replace(/\s*\n\s*/g, ' ');
}

function suggestFlags(name: string, options: Options): string[] {
  return closest(name, Object.keys(options)).map((n) => `--${n}`);
}
