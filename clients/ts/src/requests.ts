/**
 * The client's requests waiting for a reply, and the frames waiting for a
 * connection. A request has a timeout from the moment the app makes it;
 * made while the socket is down it waits in the outbox (bounded: beyond
 * `maxQueued` it fails at once) and goes out after the next handshake; in
 * flight when the socket drops it fails with {@link BadConnectionError}
 * (nothing is re-sent behind the app's back). Kept apart from the socket so
 * that the client's module stays about the connection.
 * @module
 */

import { BadConnectionError, RemoteError, TimeoutError } from './errors.js';

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  sent: boolean;
  what: string;
}

/** Requests by cid, and the outbox. */
export class Requests {
  readonly #pending = new Map<number, Pending>();
  #outbox: { text: string; cid: number | null }[] = [];

  constructor(readonly maxQueued: number) {}

  /** Whether the outbox is full. */
  get full(): boolean {
    return this.#outbox.length >= this.maxQueued;
  }

  /**
   * Registers request `cid` and resolves with its reply; `timeout` null
   * means no timer of its own. With `sent` false its `text` waits in the
   * outbox.
   */
  add(cid: number, what: string, timeout: number | null, sent: boolean, text: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.track(cid, what, timeout, sent, text, { resolve, reject });
    });
  }

  /**
   * {@link Requests.add} with callbacks, called synchronously with the
   * reply (the client's own requests: the handshake, subscribes), so that
   * a reply takes effect before the next frame of the same message.
   * Without `onTimeout` a timeout rejects with {@link TimeoutError}.
   */
  track(
    cid: number,
    what: string,
    timeout: number | null,
    sent: boolean,
    text: string,
    callbacks: { resolve: (v: unknown) => void; reject: (e: unknown) => void; onTimeout?: () => void },
  ): void {
    const timer =
      timeout === null
        ? undefined
        : setTimeout(() => {
            this.#pending.delete(cid);
            if (callbacks.onTimeout) callbacks.onTimeout();
            else callbacks.reject(new TimeoutError(`${what}: no reply within ${timeout} ms`));
          }, timeout);
    this.#pending.set(cid, { resolve: callbacks.resolve, reject: callbacks.reject, timer, sent, what });
    if (!sent) this.#outbox.push({ text, cid });
  }

  /** A frame without reply (transmit, publish without ack) to send once connected; dropped when the outbox is full. */
  queue(text: string): void {
    if (!this.full) this.#outbox.push({ text, cid: null });
  }

  /** A reply: settles its request; false when nothing waited for it. */
  settle(rid: number, data: unknown, error: unknown): boolean {
    const p = this.#pending.get(rid);
    if (!p) return false;
    this.#pending.delete(rid);
    clearTimeout(p.timer);
    if (error !== undefined && error !== null) p.reject(new RemoteError(error));
    else p.resolve(data);
    return true;
  }

  /** Takes what waits in the outbox (requests that timed out meanwhile left out), marking the requests sent. */
  drain(): string[] {
    const out: string[] = [];
    for (const item of this.#outbox) {
      if (item.cid !== null) {
        const p = this.#pending.get(item.cid);
        if (!p) continue;
        p.sent = true;
      }
      out.push(item.text);
    }
    this.#outbox = [];
    return out;
  }

  /** Fails the requests in flight (`all`: also those waiting, and empties the outbox). */
  fail(all: boolean, why: string): void {
    for (const [cid, p] of this.#pending) {
      if (!all && !p.sent) continue;
      this.#pending.delete(cid);
      clearTimeout(p.timer);
      p.reject(new BadConnectionError(`${p.what}: ${why}`));
    }
    if (all) this.#outbox = [];
  }
}
