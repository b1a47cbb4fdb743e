/**
 * One subscription as the app holds it: an async iterable of publications
 * (`for await (const msg of sub)`), its channel's position, and its events
 * (gaps, joins and leaves, lag). The same class serves the direct client and
 * the shared-worker client; whoever feeds it calls the `_`-prefixed methods.
 *
 * Recovered and live publications arrive through the same iterator, in
 * order, without duplicates. A gap (publications lost for good) is reported
 * in place: as the `gap` event when it is found, and on the first
 * publication after it (`msg.gap`), so a `for await` loop sees it where it
 * happened. The iterator ends when the app unsubscribes, when the server
 * kicks the socket out of the channel, or when the client closes; it throws
 * when the subscribe was refused.
 * @module
 */

import { Emitter } from './emitter.js';
import { HeraldError } from './errors.js';
import { AsyncQueue } from './queue.js';
import type { Gap, StreamPosition } from './tracker.js';

/** A publication on a channel. */
export interface Publication<T = unknown> {
  /** The channel. */
  channel: string;
  /** What was published. */
  data: T;
  /** Its offset, on a channel with history. */
  offset?: number;
  /** Its stream's epoch, on a channel with history. */
  epoch?: string;
  /** The gap right before this publication, if publications were lost just before it. */
  gap?: Gap;
}

/** A socket joined or left a channel (namespaces with `join_leave`). */
export interface PresenceEvent {
  channel: string;
  /** The socket's id. */
  client: string;
  /** Its user claim, or null. */
  user: string | null;
}

/** The events of a {@link Subscription}. */
export interface SubscriptionEvents {
  [event: string]: unknown;
  /** The server confirmed the subscription (again after each reconnect). */
  subscribed: StreamPosition | null;
  /** Publications were lost for good (see {@link Gap}). */
  gap: Gap;
  /** The app read too slowly: this many publications were dropped here (not on the server). */
  lagged: number;
  join: PresenceEvent;
  leave: PresenceEvent;
  /** The server removed the socket from the channel; the iterator ends. */
  kicked: unknown;
  /** The subscribe was refused; the iterator throws it. */
  error: HeraldError;
}

/** Options of a subscribe. */
export interface SubscribeOptions {
  /** Resume after this position (one the app saved), recovering what came after it. */
  since?: StreamPosition;
  /** Publications buffered for a slow reader before the oldest are dropped (default 10000). */
  buffer?: number;
}

/** One subscription to a channel. */
export class Subscription<T = unknown> implements AsyncIterable<Publication<T>> {
  readonly events = new Emitter<SubscriptionEvents>();
  readonly #queue: AsyncQueue<Publication<T>>;
  #pendingGap: Gap | undefined;
  #position: StreamPosition | null = null;
  #ready: Promise<StreamPosition | null>;
  #settle!: { resolve: (p: StreamPosition | null) => void; reject: (e: unknown) => void };
  #settled = false;
  #release: (sub: Subscription<T>) => void;
  #active = true;

  /** @internal */
  constructor(
    readonly channel: string,
    release: (sub: Subscription<T>) => void,
    buffer = 10000,
  ) {
    this.#release = release;
    this.#queue = new AsyncQueue(buffer);
    this.#ready = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    // An app that never awaits `ready` must not see an unhandled rejection.
    this.#ready.catch(() => {});
  }

  /** Resolves when the server confirmed the subscription (with the stream's position on a channel with history); rejects when it refused. */
  get ready(): Promise<StreamPosition | null> {
    return this.#ready;
  }

  /** The position of the last publication delivered (or of the subscribe reply): save it to resume with `since`. */
  get position(): StreamPosition | null {
    return this.#position ? { ...this.#position } : null;
  }

  /** Whether the subscription still receives publications. */
  get active(): boolean {
    return this.#active;
  }

  /** Listens to one of the subscription's events. */
  on<K extends keyof SubscriptionEvents>(event: K, f: (v: SubscriptionEvents[K]) => void): () => void {
    return this.events.on(event, f);
  }

  /** Stops the subscription (the server unsubscribes when no other subscription of this client wants the channel). */
  unsubscribe(): void {
    if (!this.#active) return;
    this._end();
    this.#release(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<Publication<T>> {
    return {
      next: () => this.#queue.next(),
      return: async () => {
        this.unsubscribe();
        return { value: undefined, done: true };
      },
    };
  }

  /** @internal A publication to deliver. */
  _deliver(p: Publication<T>): void {
    if (!this.#active) return;
    if (p.offset !== undefined && p.epoch !== undefined) this.#position = { offset: p.offset, epoch: p.epoch };
    if (this.#pendingGap) {
      p = { ...p, gap: this.#pendingGap };
      this.#pendingGap = undefined;
    }
    const before = this.#queue.dropped;
    this.#queue.push(p);
    if (this.#queue.dropped !== before) this.events.emit('lagged', this.#queue.dropped - before);
  }

  /** @internal A gap to report before the next publication. */
  _gap(gap: Gap): void {
    if (!this.#active) return;
    this.#position = { ...gap.resume };
    this.#pendingGap = gap;
    this.events.emit('gap', gap);
  }

  /** @internal The server confirmed the subscription. */
  _subscribed(position: StreamPosition | null): void {
    if (position && (!this.#position || this.#position.epoch !== position.epoch || position.offset > this.#position.offset)) {
      this.#position = { ...position };
    }
    if (!this.#settled) {
      this.#settled = true;
      this.#settle.resolve(position);
    }
    this.events.emit('subscribed', position);
  }

  /** @internal The position to start from (set before the first subscribe). */
  _seed(position: StreamPosition | null): void {
    this.#position = position ? { ...position } : null;
  }

  /** @internal The subscribe was refused: the iterator throws. */
  _fail(error: HeraldError): void {
    if (!this.#active) return;
    this.#active = false;
    if (!this.#settled) {
      this.#settled = true;
      this.#settle.reject(error);
    }
    this.events.emit('error', error);
    this.#queue.end(error);
  }

  /** @internal The server kicked the socket out of the channel. */
  _kicked(message: unknown): void {
    if (!this.#active) return;
    this.events.emit('kicked', message);
    this._end();
  }

  /** @internal Ends the iterator (after what waits). */
  _end(): void {
    if (!this.#active) return;
    this.#active = false;
    if (!this.#settled) {
      this.#settled = true;
      this.#settle.reject(new HeraldError(`the subscription to ${this.channel} ended before the server confirmed it`));
    }
    this.#queue.end();
  }
}
