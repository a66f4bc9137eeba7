/**
 * The one place that talks HTTP (axios). Requests never throw for a status code: callers classify the
 * status with `isFinalStatus`, and transport failures become `TransportError`s, which are always retryable.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import axios, { type AxiosInstance } from 'axios';
import { oneLine } from '../reporter.ts';

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT';
  url: string;
  headers?: Record<string, string>;
  /** A factory for streamed bodies, so a retry can reopen the file. */
  body?: string | Buffer | (() => Readable);
  timeoutMs: number;
  /** Aborts the request (e.g. when finish gives up). */
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The request never got a status: refused, reset, DNS, timeout. */
export class TransportError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
    this.name = 'TransportError';
  }
}

export class HttpClient {
  private readonly axios: AxiosInstance;
  private readonly httpAgent = new http.Agent({ keepAlive: true });
  private readonly httpsAgent = new https.Agent({ keepAlive: true });

  constructor(userAgent: string) {
    this.axios = axios.create({
      headers: { 'User-Agent': userAgent },
      validateStatus: () => true,
      responseType: 'text',
      transformResponse: [(data: unknown) => data],
      maxBodyLength: Infinity,
      maxContentLength: 64 << 20,
      httpAgent: this.httpAgent,
      httpsAgent: this.httpsAgent,
    });
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    // axios' own timeout is an idle-socket timeout; the signal bounds the whole exchange.
    const deadline = AbortSignal.timeout(req.timeoutMs);
    const signal = req.signal ? AbortSignal.any([deadline, req.signal]) : deadline;
    try {
      const res = await this.axios.request<string>({
        method: req.method,
        url: req.url,
        headers: req.headers,
        data: typeof req.body === 'function' ? req.body() : req.body,
        timeout: req.timeoutMs,
        signal,
      });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined && v !== null) headers[k.toLowerCase()] = String(v);
      return { status: res.status, headers, body: typeof res.data === 'string' ? res.data : '' };
    } catch (e) {
      const err = e as { code?: string; message?: string };
      if (req.signal?.aborted) throw new TransportError('cancelled', 'ECANCELLED');
      const timedOut = deadline.aborted || err.code === 'ECONNABORTED' || err.code === 'ETIMEDOUT';
      const code = timedOut ? 'ETIMEDOUT' : err.code ?? 'ENETWORK';
      // Only the code and axios' short message: the error object also holds the request config and headers.
      throw new TransportError(timedOut ? `timed out after ${req.timeoutMs} ms` : oneLine(err.message ?? code, 120), code);
    }
  }

  /** Closes kept-alive sockets so the process can exit. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }
}

/** Statuses that will fail the same way however often they are retried (wandb-core's list). */
export function isFinalStatus(status: number): boolean {
  return [400, 401, 403, 404, 409, 410, 413, 422, 501].includes(status);
}

/** Retry-After as milliseconds, from seconds or an HTTP date; undefined when absent or unreadable. */
function retryAfterMs(header: string | undefined, nowMs: number): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && header.trim() !== '') return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

export interface Backoff {
  baseMs: number;
  maxMs: number;
}

/** base·2^attempt, capped, plus up to 25 % jitter so parallel runs do not retry in lockstep. */
function backoffMs(attempt: number, b: Backoff, random: () => number = Math.random): number {
  const raw = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 30));
  return raw + raw * 0.25 * random();
}

/** The wait before the next attempt after a retryable response: Retry-After wins when the server sent one. */
export function retryDelayMs(attempt: number, b: Backoff, res: HttpResponse | undefined, nowMs: number): number {
  const after = res ? retryAfterMs(res.headers['retry-after'], nowMs) : undefined;
  return after ?? backoffMs(attempt, b);
}

/**
 * A wait that can be cut short. `keepAlive: false` lets the process exit meanwhile: background loops use
 * that during training, and keep the process alive only once finish is waiting on them.
 */
export function sleep(ms: number, signal?: AbortSignal, keepAlive = true): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    if (!keepAlive) timer.unref();
    signal?.addEventListener('abort', done, { once: true });
  });
}
