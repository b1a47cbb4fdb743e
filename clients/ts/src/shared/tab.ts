/**
 * The tab's side of the shared socket: a {@link Client} whose socket lives
 * in a SharedWorker ({@link Hub}), talking to it over the worker's port.
 *
 * The tab keeps its own subscriptions, receivers and handlers (and tells
 * the hub what it wants), answers the hub's pings, says `bye` when the page
 * unloads, and keeps the token in its {@link TokenStore}: it saves what the
 * worker's socket was issued, and forwards changes other tabs made to the
 * store (the worker cannot read localStorage).
 * @module
 */

import type {
  Client,
  ClientEvents,
  ConnectionState,
  HistoryOptions,
  HistoryPage,
  InvokeHandler,
  Presence,
  PresenceStats,
  PublishOptions,
  RequestOptions,
} from '../api.js';
import type { ClientOptions } from '../client.js';
import { Emitter } from '../emitter.js';
import { BadConnectionError, HeraldError, TimeoutError, fromErrorObject, toErrorObject } from '../errors.js';
import { decodeClaims } from '../protocol.js';
import { Subscription, type SubscribeOptions } from '../subscription.js';
import { defaultTokenStore, type TokenStore } from '../tokens.js';
import type { HelloOptions, Op, ToTab, ToWorker } from './messages.js';
import type { PortLike } from './hub.js';

/** How much later than the worker's own timeout a tab gives up on it, ms. */
const BACKSTOP = 2000;

/** Where the shared worker is. */
export interface SharedOptions {
  /** URL of the worker script (`dist/worker.js` of this package, as the app serves it). */
  worker?: string | URL;
  /** The worker's name: tabs share a worker with the same URL and name (default `herald`). */
  name?: string;
  /** A port to an already running hub (tests; instead of `worker`). */
  port?: PortLike;
}

/** A {@link Client} over a shared worker's socket. */
export class SharedClient implements Client {
  readonly #port: PortLike;
  readonly #store: TokenStore;
  readonly #events = new Emitter<ClientEvents>();
  readonly #receivers = new Emitter<Record<string, unknown>>();
  readonly #handlers = new Map<string, InvokeHandler>();
  readonly #subs = new Map<string, Set<Subscription<unknown>>>();
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  #state: ConnectionState = 'connecting';
  #id: string | null = null;
  #token: string | null = null;
  #authenticated = false;
  #reqId = 0;
  #closed = false;
  #unwatch: (() => void) | null;
  #unload: (() => void) | null = null;
  #beforeHello: ToWorker[] | null = [];
  readonly #ackTimeout: number;

  constructor(options: ClientOptions, shared: SharedOptions) {
    this.#store = options.tokenStore ?? defaultTokenStore();
    this.#ackTimeout = options.ackTimeout ?? 10000;
    if (shared.port) {
      this.#port = shared.port;
    } else {
      if (!shared.worker) throw new HeraldError('shared mode needs the worker script URL (shared.worker)');
      const worker = new SharedWorker(shared.worker, { type: 'module', name: shared.name ?? 'herald' });
      worker.onerror = () => this.#events.emit('error', new HeraldError('the shared worker failed to start'));
      this.#port = worker.port;
    }
    this.#port.onmessage = (e) => this.#onMessage(e.data as ToTab);
    this.#port.start?.();
    const hello: HelloOptions = { url: options.url };
    if (options.reconnect) hello.reconnect = options.reconnect;
    if (options.ackTimeout !== undefined) hello.ackTimeout = options.ackTimeout;
    if (options.connectTimeout !== undefined) hello.connectTimeout = options.connectTimeout;
    if (options.maxQueued !== undefined) hello.maxQueued = options.maxQueued;
    // The hello goes first: what the app asks before the store answered waits.
    const sendHello = (token: string | null) => {
      if (this.#closed) return;
      this.#port.postMessage({ t: 'hello', options: hello, token } satisfies ToWorker);
      const waiting = this.#beforeHello;
      this.#beforeHello = null;
      for (const m of waiting ?? []) this.#port.postMessage(m);
    };
    let loaded: string | null | Promise<string | null>;
    try {
      loaded = this.#store.load();
    } catch {
      loaded = null;
    }
    if (loaded instanceof Promise) loaded.then(sendHello, () => sendHello(null));
    else sendHello(loaded);
    this.#unwatch = this.#store.watch?.((t) => this.#tokenChanged(t)) ?? null;
    if (typeof addEventListener === 'function' && typeof window !== 'undefined') {
      // A page kept in the back/forward cache may come back: no goodbye
      // then (if it stays away, the hub's pings notice).
      const bye = (e: Event) => {
        if (!(e as PageTransitionEvent).persisted) this.#post({ t: 'bye' });
      };
      addEventListener('pagehide', bye);
      this.#unload = () => removeEventListener('pagehide', bye);
    }
  }

  get state(): ConnectionState {
    return this.#state;
  }
  get id(): string | null {
    return this.#id;
  }
  get isAuthenticated(): boolean {
    return this.#authenticated;
  }
  get authToken(): string | null {
    return this.#token;
  }
  get claims(): Record<string, unknown> | null {
    return this.#authenticated ? decodeClaims(this.#token) : null;
  }

  on<K extends keyof ClientEvents>(event: K, listener: (v: ClientEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  ready(): Promise<void> {
    if (this.#state === 'open') return Promise.resolve();
    if (this.#closed) return Promise.reject(new BadConnectionError('the client is closed'));
    return new Promise((resolve, reject) => {
      const off = this.#events.on('state', (s) => {
        if (s === 'open') {
          off();
          resolve();
        } else if (s === 'closed') {
          off();
          reject(new BadConnectionError('the client is closed'));
        }
      });
    });
  }

  subscribe<T = unknown>(channel: string, options: SubscribeOptions = {}): Subscription<T> {
    const sub = new Subscription<T>(channel, (s) => this.#release(s as Subscription<unknown>), options.buffer);
    if (this.#closed) {
      sub._fail(new BadConnectionError('the client is closed'));
      return sub;
    }
    let set = this.#subs.get(channel);
    if (!set) {
      set = new Set();
      this.#subs.set(channel, set);
      const m: ToWorker = { t: 'sub', channel };
      if (options.since) m.since = options.since;
      this.#post(m);
    }
    if (options.since) sub._seed(options.since);
    set.add(sub as Subscription<unknown>);
    return sub;
  }

  async publish(channel: string, data: unknown, options: PublishOptions = {}): Promise<void> {
    await this.#request('publish', [channel, data, options], this.#timeout(options));
  }

  invoke<R = unknown>(procedure: string, data?: unknown, options: RequestOptions = {}): Promise<R> {
    return this.#request('invoke', [procedure, data, options], this.#timeout(options)) as Promise<R>;
  }

  transmit(event: string, data?: unknown): void {
    this.#post({ t: 'transmit', event, data });
  }

  handle(procedure: string, handler: InvokeHandler): () => void {
    this.#handlers.set(procedure, handler);
    this.#post({ t: 'handle', event: procedure });
    return () => {
      if (this.#handlers.get(procedure) !== handler) return;
      this.#handlers.delete(procedure);
      this.#post({ t: 'unhandle', event: procedure });
    };
  }

  receive(event: string, listener: (data: unknown) => void): () => void {
    if (!this.#receivers.listens(event)) this.#post({ t: 'receive', event });
    const off = this.#receivers.on(event, listener);
    return () => {
      off();
      if (!this.#receivers.listens(event)) this.#post({ t: 'unreceive', event });
    };
  }

  async authenticate(token: string): Promise<boolean> {
    await this.#store.save(token);
    return (await this.#request('authenticate', [token])) as boolean;
  }

  async deauthenticate(): Promise<void> {
    await this.#store.remove();
    await this.#request('deauthenticate', []);
  }

  history<T = unknown>(channel: string, options: HistoryOptions = {}): Promise<HistoryPage<T>> {
    return this.#request('history', [channel, options], this.#timeout(options)) as Promise<HistoryPage<T>>;
  }

  presence(channel: string, options: RequestOptions = {}): Promise<Presence> {
    return this.#request('presence', [channel, options], this.#timeout(options)) as Promise<Presence>;
  }

  presenceStats(channel: string, options: RequestOptions = {}): Promise<PresenceStats> {
    return this.#request('presenceStats', [channel, options], this.#timeout(options)) as Promise<PresenceStats>;
  }

  close(): void {
    if (this.#closed) return;
    if (this.#beforeHello) this.#beforeHello = null;
    else this.#post({ t: 'bye' });
    this.#closed = true;
    this.#unwatch?.();
    this.#unload?.();
    for (const p of this.#pending.values()) p.reject(new BadConnectionError('the client was closed'));
    this.#pending.clear();
    for (const set of this.#subs.values()) for (const s of set) s._end();
    this.#subs.clear();
    try {
      this.#port.close();
    } catch {
      // Closed already.
    }
    this.#setState('closed');
  }

  #post(m: ToWorker): void {
    if (this.#closed) return;
    if (this.#beforeHello) this.#beforeHello.push(m);
    else this.#port.postMessage(m);
  }

  /**
   * Forwards a request to the worker, whose client applies its timeout;
   * `timeout` (ms) is a backstop a little later, for a worker that died.
   */
  #request(op: Op, args: unknown[], timeout: number | null = null): Promise<unknown> {
    if (this.#closed) return Promise.reject(new BadConnectionError('the client is closed'));
    const id = ++this.#reqId;
    return new Promise((resolve, reject) => {
      const timer =
        timeout === null
          ? undefined
          : setTimeout(() => {
              if (!this.#pending.delete(id)) return;
              reject(new TimeoutError(`${op}: the shared worker did not answer within ${timeout} ms`));
            }, timeout + BACKSTOP);
      const settle = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      this.#pending.set(id, { resolve: settle(resolve), reject: settle(reject) });
      this.#post({ t: 'req', id, op, args });
    });
  }

  #timeout(options: RequestOptions): number {
    return options.timeout ?? this.#ackTimeout;
  }

  #release(sub: Subscription<unknown>): void {
    const set = this.#subs.get(sub.channel);
    if (!set || !set.delete(sub) || set.size > 0) return;
    this.#subs.delete(sub.channel);
    this.#post({ t: 'unsub', channel: sub.channel });
  }

  #setState(s: ConnectionState): void {
    if (this.#state === s) return;
    this.#state = s;
    this.#events.emit('state', s);
  }

  #setAuth(token: string | null, authenticated: boolean): void {
    const was = this.#authenticated;
    const before = this.#token;
    this.#token = token;
    this.#authenticated = authenticated && token !== null;
    if (this.#authenticated && token && (!was || before !== token)) {
      this.#events.emit('authenticate', { token, claims: decodeClaims(token) });
    } else if (!this.#authenticated && was) {
      this.#events.emit('deauthenticate', undefined);
    }
  }

  #onMessage(m: ToTab): void {
    if (this.#closed || !m || typeof m !== 'object') return;
    switch (m.t) {
      case 'ping':
        this.#post({ t: 'pong' });
        return;
      case 'welcome':
        this.#id = m.id;
        this.#setAuth(m.token, m.authenticated);
        this.#setState(m.state);
        return;
      case 'state':
        this.#id = m.id;
        this.#setState(m.state);
        return;
      case 'event':
        this.#events.emit(m.name, m.value as never);
        return;
      case 'error':
        this.#events.emit('error', fromErrorObject(m.error));
        return;
      case 'auth':
        void Promise.resolve(this.#store.save(m.token)).catch(() => {});
        this.#setAuth(m.token, true);
        return;
      case 'deauth':
        void Promise.resolve(this.#store.remove()).catch(() => {});
        this.#setAuth(null, false);
        return;
      case 'res': {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.ok) p.resolve(m.value);
        else p.reject(fromErrorObject(m.error ?? {}));
        return;
      }
      case 'pub':
        for (const s of this.#subs.get(m.p.channel) ?? []) s._deliver({ ...m.p });
        return;
      case 'subscribed':
        for (const s of this.#subs.get(m.channel) ?? []) s._subscribed(m.position);
        return;
      case 'gap': {
        const subs = this.#subs.get(m.gap.channel);
        if (!subs) return;
        for (const s of subs) s._gap(m.gap);
        this.#events.emit('gap', m.gap);
        return;
      }
      case 'presence': {
        const subs = this.#subs.get(m.e.channel);
        if (!subs) return;
        for (const s of subs) s.events.emit(m.kind, m.e);
        this.#events.emit(m.kind, m.e);
        return;
      }
      case 'subend': {
        const subs = this.#subs.get(m.channel);
        this.#subs.delete(m.channel);
        for (const s of subs ?? []) {
          if (m.kicked) s._kicked(m.message);
          else if (m.error) s._fail(fromErrorObject(m.error));
          else s._end();
        }
        return;
      }
      case 'transmit':
        this.#receivers.emit(m.event, m.data);
        return;
      case 'sinvoke':
        void this.#answer(m.id, m.procedure, m.data);
        return;
    }
  }

  async #answer(id: number, procedure: string, data: unknown): Promise<void> {
    const handler = this.#handlers.get(procedure);
    try {
      if (!handler) throw new HeraldError(`no handler for ${procedure} in this tab`, 'NoSuchProcedureError');
      this.#post({ t: 'sreply', id, ok: true, value: await handler(data) });
    } catch (e) {
      this.#post({ t: 'sreply', id, ok: false, error: toErrorObject(e) });
    }
  }

  #tokenChanged(token: string | null): void {
    if (this.#closed || token === this.#token) return;
    const req = token === null ? this.#request('deauthenticate', []) : this.#request('authenticate', [token]);
    req.catch((e: unknown) => this.#events.emit('error', e instanceof HeraldError ? e : new HeraldError(String(e))));
  }
}
