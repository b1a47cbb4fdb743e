/**
 * When to reconnect: exponential backoff with full jitter, and the server's
 * retry hints.
 *
 * After the n-th failed attempt in a row (from 0) the client waits a delay
 * drawn uniformly from `[0, min(maxDelay, initialDelay * multiplier^n)]`
 * (full jitter spreads a crowd of clients that lost the same server over the
 * whole window). A successful handshake resets the count. The server's hints
 * override the schedule:
 *
 * - close **1013** with reason `retry after <seconds>` (admission control,
 *   sent to browsers which cannot read an HTTP 503's `Retry-After`): wait
 *   that long, plus a jitter of up to one backoff step;
 * - HTTP **503** with `Retry-After` on the upgrade (readable with `ws` in
 *   Node): the same;
 * - close **1012** (the server is draining): reconnect now, with a jitter of
 *   up to `drainJitter` so that the whole drained crowd does not arrive at
 *   once;
 * - close 4000, 4001, 1005 (a dead connection): reconnect at once;
 * - close 1000 from the server: the server meant it; no reconnect.
 *
 * Pure arithmetic plus a random draw, unit-tested without a clock.
 * @module
 */

/** How the client reconnects. */
export interface ReconnectOptions {
  /** Reconnect at all (default true). */
  enabled?: boolean;
  /** First delay ceiling in ms (default 500). */
  initialDelay?: number;
  /** Growth of the ceiling per failure (default 1.5). */
  multiplier?: number;
  /** Largest ceiling in ms (default 30000). */
  maxDelay?: number;
  /** Spread of the reconnects after a 1012 drain, in ms (default 2000). */
  drainJitter?: number;
}

/** {@link ReconnectOptions} with every field set. */
export type ReconnectPolicy = Required<ReconnectOptions>;

/** The defaults, the Rust client's. */
export const DEFAULT_RECONNECT: ReconnectPolicy = {
  enabled: true,
  initialDelay: 500,
  multiplier: 1.5,
  maxDelay: 30000,
  drainJitter: 2000,
};

/** The ceiling of the delay before attempt `failures` (0-based). */
export function ceiling(policy: ReconnectPolicy, failures: number): number {
  const m = Number.isFinite(policy.multiplier) && policy.multiplier >= 1 ? policy.multiplier : 1;
  const c = Math.min(policy.maxDelay, policy.initialDelay * Math.pow(m, failures));
  return Number.isFinite(c) && c > 0 ? c : 0;
}

/** A delay drawn uniformly from `[0, max]`. */
export function fullJitter(max: number, random: () => number = Math.random): number {
  return max > 0 ? random() * max : 0;
}

/** The reconnect schedule: failures in a row. */
export class Backoff {
  failures = 0;
  constructor(
    readonly policy: ReconnectPolicy,
    readonly random: () => number = Math.random,
  ) {}

  /** Forgets the failures (a handshake succeeded). */
  reset(): void {
    this.failures = 0;
  }

  /** The next delay, counting one more failure. */
  next(): number {
    const d = fullJitter(ceiling(this.policy, this.failures), this.random);
    this.failures++;
    return d;
  }

  /** The delay a hint asks for (see {@link hintFromClose}), counting a failure. */
  delayFor(hint: RetryHint): number | null {
    switch (hint.kind) {
      case 'stop':
        return null;
      case 'now':
        this.failures++;
        return 0;
      case 'drain':
        this.failures++;
        return fullJitter(this.policy.drainJitter, this.random);
      case 'after': {
        const step = ceiling(this.policy, this.failures);
        this.failures++;
        return hint.ms + fullJitter(Math.min(step, hint.ms || step), this.random);
      }
      case 'backoff':
        return this.next();
    }
  }
}

/** What a close (or a refused upgrade) tells the client to do. */
export type RetryHint =
  | { kind: 'stop' }
  | { kind: 'now' }
  | { kind: 'drain' }
  | { kind: 'after'; ms: number }
  | { kind: 'backoff' };

/** Reads `retry after <seconds>` from a close reason. */
export function parseRetryAfterReason(reason: string): number | null {
  const m = /^\s*retry after\s+(\d+(?:\.\d+)?)\s*s?\s*$/i.exec(reason);
  return m ? Math.round(Number(m[1]) * 1000) : null;
}

/** Reads an HTTP `Retry-After` header (seconds, or an HTTP date). */
export function parseRetryAfterHeader(value: string | undefined, now = Date.now()): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? null : Math.max(0, date - now);
}

/** The hint of a close by the server (or of the connection's loss). */
export function hintFromClose(code: number, reason: string): RetryHint {
  switch (code) {
    case 1000:
      return { kind: 'stop' };
    case 1012:
      return { kind: 'drain' };
    case 1013: {
      const ms = parseRetryAfterReason(reason);
      return ms === null ? { kind: 'backoff' } : { kind: 'after', ms };
    }
    case 4000:
    case 4001:
    case 1005:
      return { kind: 'now' };
    default:
      return { kind: 'backoff' };
  }
}
