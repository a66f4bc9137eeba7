/** Where tracking tells the user things; pino's logger fits this shape. */
export interface TrackingLogger {
  info(message: string): void;
  warn(message: string): void;
}

export const stderrLogger: TrackingLogger = {
  info: (m) => process.stderr.write(`wandb: ${m}\n`),
  warn: (m) => process.stderr.write(`wandb: warning: ${m}\n`),
};

/**
 * Every message tracking prints goes through here, so the API key is scrubbed in one place and repeated
 * failures (a dead connection retried for hours) are reported once instead of flooding the training log.
 */
export class Reporter {
  private readonly secrets: string[];
  private readonly said = new Set<string>();

  constructor(private readonly logger: TrackingLogger, apiKey?: string) {
    this.secrets = apiKey ? secretForms(apiKey) : [];
  }

  redact(text: string): string {
    return redactSecrets(text, this.secrets);
  }

  info(message: string): void {
    this.logger.info(this.redact(message));
  }

  warn(message: string): void {
    this.logger.warn(this.redact(message));
  }

  /** Warns only the first time `key` is seen; says whether it warned. */
  warnOnce(key: string, message: string): boolean {
    if (this.said.has(key)) return false;
    this.said.add(key);
    this.warn(message);
    return true;
  }
}

/** The key as it could appear anywhere: itself, and inside a Basic auth header. */
export function secretForms(apiKey: string): string[] {
  return [apiKey, Buffer.from(`api:${apiKey}`).toString('base64')];
}

function redactSecrets(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) if (s) out = out.split(s).join('***');
  return out;
}

/** One line, bounded: server bodies and error texts end up in warnings. */
export function oneLine(text: string, max = 300): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
