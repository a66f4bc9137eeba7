import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isUserError } from '../errors.ts';
import { describeFsError } from '../io/fs-error.ts';
import { commandsFor } from './commands.ts';

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Number flags, re-read from the raw arguments. yargs-parser adds a repeated number flag whose last
 * value is 1 to the earlier value (`--epochs 3 --epochs 1` gives 4: yargs/yargs-parser#506), so the
 * last occurrence is taken from argv; and a value that is not a number is named as typed, not as NaN.
 */
function numberFlags(raw: string[]) {
  return (argv: Record<string, unknown>, y: unknown) => {
    const end = raw.indexOf('--') === -1 ? raw.length : raw.indexOf('--');
    for (const key of (y as { getOptions(): { number: string[] } }).getOptions().number) {
      const camel = key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
      const spellings = new Set([`--${key}`, `--${camel}`]);
      let last: string | undefined;
      let count = 0;
      for (let i = 0; i < end; i++) {
        const [flag, inline] = raw[i].includes('=') ? [raw[i].slice(0, raw[i].indexOf('=')), raw[i].slice(raw[i].indexOf('=') + 1)] : [raw[i], undefined];
        if (!spellings.has(flag)) continue;
        count++;
        last = inline ?? raw[i + 1];
      }
      if (count === 0) continue;
      if (last === undefined || last.startsWith('--')) throw new FlagError(`--${key}: give a number after it`);
      const value = Number(last);
      if (Number.isNaN(value)) throw new FlagError(`--${key} ${last}: not a number`);
      if (count > 1) {
        argv[key] = value;
        argv[camel] = value;
      }
    }
  };
}

async function main(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug');
  let cli = yargs(argv)
    .scriptName('ort-dann')
    // A flag given twice means the last one counts, as in most CLIs (not an array).
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .usage('$0 <command> [options]')
    .option('debug', { type: 'boolean', default: false, describe: 'Print stack traces for errors' })
    .strict()
    .demandCommand(1, 'Name a command; see ort-dann --help')
    .recommendCommands()
    .middleware(numberFlags(argv) as never, true)
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      if (err) throw err;
      throw new FlagError(msg);
    });
  for (const command of await commandsFor(argv)) cli = cli.command(command as never);
  try {
    await cli.parseAsync();
  } catch (caught) {
    // A file-system error no command translated still names its path and a fix.
    const e = describeFsError(caught);
    if (e instanceof FlagError) {
      process.stderr.write(`ort-dann: ${oneLine(e.message)} (see ort-dann --help)\n`);
    } else if (isUserError(e)) {
      process.stderr.write(`ort-dann: ${oneLine(e.message)}\n`);
      if (debug) process.stderr.write(`${e.stack}\n`);
    } else {
      const err = e as Error;
      process.stderr.write(`ort-dann: internal error: ${oneLine(err?.message ?? String(e))}${debug ? '' : ' (rerun with --debug for the stack trace)'}\n`);
      if (debug) process.stderr.write(`${err?.stack}\n`);
    }
    process.exitCode = process.exitCode || 1;
  }
}

class FlagError extends Error {}

await main(hideBin(process.argv));
