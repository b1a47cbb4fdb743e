/**
 * A tiny typed event emitter: the client's events are few and synchronous,
 * and depending on Node's `events` would not work in browsers. A listener
 * that throws does not stop the others (the error is reported on the
 * console), because one app bug must not break the connection's bookkeeping.
 * @module
 */

/** Events map: event name to the listener's argument. */
export type EventMap = { [event: string]: unknown };

/** A listener of event `K`. */
export type Listener<T> = (value: T) => void;

/** A typed event emitter. */
export class Emitter<E extends EventMap> {
  #listeners = new Map<keyof E, Set<Listener<never>>>();

  /** Calls `listener` on every `event`; returns a function removing it. */
  on<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => this.off(event, listener);
  }

  /** Calls `listener` on the next `event` only. */
  once<K extends keyof E>(event: K, listener: Listener<E[K]>): () => void {
    const off = this.on(event, (v) => {
      off();
      listener(v);
    });
    return off;
  }

  /** Removes a listener. */
  off<K extends keyof E>(event: K, listener: Listener<E[K]>): void {
    this.#listeners.get(event)?.delete(listener as Listener<never>);
  }

  /** Whether anything listens to `event`. */
  listens(event: keyof E): boolean {
    return (this.#listeners.get(event)?.size ?? 0) > 0;
  }

  /** Calls every listener of `event` with `value`. */
  emit<K extends keyof E>(event: K, value: E[K]): void {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const l of [...set]) {
      try {
        (l as Listener<E[K]>)(value);
      } catch (e) {
        console.error(`herald-client: a listener of ${String(event)} threw`, e);
      }
    }
  }

  /** Removes every listener. */
  clear(): void {
    this.#listeners.clear();
  }
}
