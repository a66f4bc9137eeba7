// Types of serve.mjs for TypeScript callers (the browser test).
export interface ServerOptions {
  model: string;
  /** 0 picks a free port. */
  port?: number;
  host?: string;
  /** Further URL paths → files. */
  extra?: Record<string, string>;
}

export function startServer(options: ServerOptions): Promise<{ url: string; close(): Promise<void> }>;
