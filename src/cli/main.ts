import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isUserError } from '../errors.ts';
import { commands } from './commands.ts';

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
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
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 110))
    .fail((msg, err) => {
      if (err) throw err;
      throw new FlagError(msg);
    });
  for (const command of commands) cli = cli.command(command as never);
  try {
    await cli.parseAsync();
  } catch (e) {
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
