/**
 * A bounded async queue with one consumer: what a subscription's
 * `for await` reads from. The network pushes without waiting; when the app
 * reads slower than publications arrive and `limit` items wait, the oldest
 * is dropped and counted (`dropped`), so a stalled consumer never grows the
 * page's memory without bound. The count is reported to the app by the
 * subscription (a `lagged` event), which can read the missed ones back from
 * the history.
 * @module
 */

/** The bounded queue. */
export class AsyncQueue<T> {
  #items: T[] = [];
  #head = 0;
  #waiter: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | null = null;
  #done = false;
  #error: unknown = null;
  /** Items dropped because the queue was full. */
  dropped = 0;

  constructor(readonly limit = 10000) {}

  /** Items waiting. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** Whether the queue was ended. */
  get done(): boolean {
    return this.#done;
  }

  /** Adds an item; returns false when the oldest was dropped to make room. */
  push(item: T): boolean {
    if (this.#done) return true;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      w.resolve({ value: item, done: false });
      return true;
    }
    this.#items.push(item);
    if (this.size > this.limit) {
      this.#head++;
      this.dropped++;
      this.#compact();
      return false;
    }
    return true;
  }

  /** Ends the queue: the consumer reads what waits, then ends (or throws `error`). */
  end(error?: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error ?? null;
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = null;
      if (this.#error !== null) w.reject(this.#error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  /** Drops what waits and ends now. */
  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.end();
  }

  /** The next item. */
  next(): Promise<IteratorResult<T>> {
    if (this.size > 0) {
      const value = this.#items[this.#head] as T;
      this.#head++;
      this.#compact();
      return Promise.resolve({ value, done: false });
    }
    if (this.#done) {
      if (this.#error !== null) {
        const e = this.#error;
        this.#error = null;
        return Promise.reject(e);
      }
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter) return Promise.reject(new Error('only one reader at a time'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}
