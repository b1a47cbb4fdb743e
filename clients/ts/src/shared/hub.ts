/**
 * The shared worker's side: one {@link HeraldClient} for every tab of the
 * origin, multiplexed over the tabs' MessagePorts.
 *
 * - One server subscription per channel however many tabs want it; each
 *   publication is posted to the tabs that subscribed, in order. A channel
 *   no open tab wants any more is unsubscribed.
 * - Each tab's requests are run by the one client and answered to that tab
 *   only.
 * - Nothing depends on the tab that created the worker: the worker lives as
 *   long as any tab holds a port, and every tab is equal.
 * - A SharedWorker is never told that a port closed, so the hub pings every
 *   port ({@link PING_INTERVAL}) and forgets a tab silent for
 *   {@link PORT_TIMEOUT} (tabs also say `bye` when they unload), releasing
 *   its channels, receivers and handlers.
 * - The worker's client keeps the token in memory; tabs keep it in their
 *   store and tell the hub when another tab changed it.
 *
 * Independent of the worker global, so that tests drive it with
 * MessageChannels in Node.
 * @module
 */

import { HeraldClient } from '../client.js';
import { BadConnectionError, RemoteError, fromErrorObject, toErrorObject } from '../errors.js';
import type { Subscription } from '../subscription.js';
import { MemoryTokenStore } from '../tokens.js';
import type { WebSocketConstructor } from '../transport.js';
import { PING_INTERVAL, PORT_TIMEOUT, type ToTab, type ToWorker } from './messages.js';

/** The part of a MessagePort the hub uses. */
export interface PortLike {
  postMessage(m: unknown): void;
  onmessage: ((e: MessageEvent) => void) | null;
  start?(): void;
  close(): void;
}

interface Tab {
  port: PortLike;
  seen: number;
  channels: Set<string>;
  receives: Set<string>;
  handles: string[];
}

interface SharedChannel {
  sub: Subscription<unknown>;
  tabs: Set<Tab>;
  position: import('../tracker.js').StreamPosition | null;
  subscribed: boolean;
}

/** Options of {@link Hub}. */
export interface HubOptions {
  /** A WebSocket constructor (tests). */
  WebSocket?: WebSocketConstructor;
  /** Ping interval and timeout, ms (tests). */
  pingInterval?: number;
  portTimeout?: number;
  /** How long a tab may take to answer a server's invoke, ms (default 10000, the server's ack timeout). */
  invokeTimeout?: number;
}

/** Default of {@link HubOptions.invokeTimeout}. */
const INVOKE_TIMEOUT = 10000;

/** The worker's multiplexer. */
export class Hub {
  readonly #tabs = new Set<Tab>();
  readonly #channels = new Map<string, SharedChannel>();
  readonly #receivers = new Map<string, () => void>();
  readonly #handlers = new Map<string, () => void>();
  readonly #invokes = new Map<number, { tab: Tab; resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  readonly #store = new MemoryTokenStore();
  #client: HeraldClient | null = null;
  #invokeId = 0;
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(readonly options: HubOptions = {}) {}

  /** Number of tabs attached (tests, diagnostics). */
  get tabCount(): number {
    return this.#tabs.size;
  }

  /** Channels subscribed on the server (tests, diagnostics). */
  get channelCount(): number {
    return this.#channels.size;
  }

  /** A new tab's port. */
  attach(port: PortLike): void {
    const tab: Tab = { port, seen: Date.now(), channels: new Set(), receives: new Set(), handles: [] };
    port.onmessage = (e) => this.#onMessage(tab, e.data as ToWorker);
    port.start?.();
  }

  #post(tab: Tab, m: ToTab): void {
    try {
      tab.port.postMessage(m);
    } catch {
      this.#drop(tab);
    }
  }

  #broadcast(m: ToTab): void {
    for (const tab of this.#tabs) this.#post(tab, m);
  }

  #onMessage(tab: Tab, m: ToWorker): void {
    tab.seen = Date.now();
    if (!m || typeof m !== 'object') return;
    if (m.t === 'hello') {
      this.#hello(tab, m);
      return;
    }
    const client = this.#client;
    if (!client || !this.#tabs.has(tab)) return;
    switch (m.t) {
      case 'pong':
        return;
      case 'bye':
        this.#drop(tab);
        return;
      case 'req':
        void this.#request(tab, client, m.id, m.op, m.args);
        return;
      case 'transmit':
        client.transmit(m.event, m.data);
        return;
      case 'sub':
        this.#subscribe(tab, client, m.channel, m.since);
        return;
      case 'unsub':
        this.#unsubscribe(tab, m.channel);
        return;
      case 'receive':
        tab.receives.add(m.event);
        if (!this.#receivers.has(m.event)) {
          this.#receivers.set(
            m.event,
            client.receive(m.event, (data) => {
              for (const t of this.#tabs) if (t.receives.has(m.event)) this.#post(t, { t: 'transmit', event: m.event, data });
            }),
          );
        }
        return;
      case 'unreceive':
        tab.receives.delete(m.event);
        this.#pruneReceivers();
        return;
      case 'handle':
        tab.handles = tab.handles.filter((h) => h !== m.event).concat(m.event);
        if (!this.#handlers.has(m.event)) {
          this.#handlers.set(m.event, client.handle(m.event, (data) => this.#serverInvoke(m.event, data)));
        }
        return;
      case 'unhandle':
        tab.handles = tab.handles.filter((h) => h !== m.event);
        this.#pruneHandlers();
        return;
      case 'sreply': {
        const w = this.#invokes.get(m.id);
        if (!w || w.tab !== tab) return;
        this.#invokes.delete(m.id);
        if (m.ok) w.resolve(m.value);
        else w.reject(new RemoteError(m.error ?? {}));
        return;
      }
    }
  }

  #hello(tab: Tab, m: Extract<ToWorker, { t: 'hello' }>): void {
    if (!this.#client) {
      if (m.token) this.#store.save(m.token);
      const clientOptions: import('../client.js').ClientOptions = { ...m.options, tokenStore: this.#store };
      if (this.options.WebSocket) clientOptions.WebSocket = this.options.WebSocket;
      const client = new HeraldClient(clientOptions);
      this.#client = client;
      client.on('state', (state) => {
        this.#broadcast({ t: 'state', state, id: client.id });
        if (state === 'closed' && this.#client === client) this.#forget();
      });
      client.on('connect', (value) => this.#broadcast({ t: 'event', name: 'connect', value }));
      client.on('disconnect', (value) => this.#broadcast({ t: 'event', name: 'disconnect', value }));
      client.on('reconnecting', (value) => this.#broadcast({ t: 'event', name: 'reconnecting', value }));
      client.on('kickOut', (value) => this.#broadcast({ t: 'event', name: 'kickOut', value }));
      client.on('error', (e) => this.#broadcast({ t: 'error', error: toErrorObject(e) }));
      client.on('authenticate', ({ token }) => this.#broadcast({ t: 'auth', token }));
      client.on('deauthenticate', () => this.#broadcast({ t: 'deauth' }));
      this.#timer = setInterval(() => this.#pingTabs(), this.options.pingInterval ?? PING_INTERVAL);
    }
    this.#tabs.add(tab);
    const c = this.#client;
    this.#post(tab, { t: 'welcome', state: c.state, id: c.id, token: c.authToken, authenticated: c.isAuthenticated });
  }

  async #request(tab: Tab, client: HeraldClient, id: number, op: string, args: unknown[]): Promise<void> {
    try {
      let value: unknown;
      switch (op) {
        case 'invoke':
          value = await client.invoke(args[0] as string, args[1], (args[2] ?? {}) as object);
          break;
        case 'publish':
          value = await client.publish(args[0] as string, args[1], (args[2] ?? {}) as object);
          break;
        case 'history':
          value = await client.history(args[0] as string, (args[1] ?? {}) as object);
          break;
        case 'presence':
          value = await client.presence(args[0] as string, (args[1] ?? {}) as object);
          break;
        case 'presenceStats':
          value = await client.presenceStats(args[0] as string, (args[1] ?? {}) as object);
          break;
        case 'authenticate':
          // Several tabs report the same change of the shared store: once is enough.
          value = args[0] === client.authToken && client.isAuthenticated ? true : await client.authenticate(args[0] as string);
          break;
        case 'deauthenticate':
          if (client.authToken !== null || client.isAuthenticated) await client.deauthenticate();
          break;
        default:
          throw new RemoteError({ name: 'InvalidArgumentsError', message: `unknown operation ${op}` });
      }
      this.#post(tab, { t: 'res', id, ok: true, value });
    } catch (e) {
      this.#post(tab, { t: 'res', id, ok: false, error: toErrorObject(e) });
    }
  }

  #subscribe(tab: Tab, client: HeraldClient, name: string, since: import('../tracker.js').StreamPosition | undefined): void {
    tab.channels.add(name);
    let ch = this.#channels.get(name);
    if (!ch) {
      const sub = client.subscribe(name, since ? { since } : {});
      const created: SharedChannel = { sub, tabs: new Set(), position: null, subscribed: false };
      ch = created;
      this.#channels.set(name, created);
      const each = (f: (t: Tab) => void) => {
        for (const t of created.tabs) f(t);
      };
      sub.on('subscribed', (position) => {
        created.subscribed = true;
        created.position = position;
        each((t) => this.#post(t, { t: 'subscribed', channel: name, position }));
      });
      sub.on('gap', (gap) => each((t) => this.#post(t, { t: 'gap', gap })));
      sub.on('join', (e) => each((t) => this.#post(t, { t: 'presence', kind: 'join', e })));
      sub.on('leave', (e) => each((t) => this.#post(t, { t: 'presence', kind: 'leave', e })));
      sub.on('kicked', (message) => {
        this.#channels.delete(name);
        each((t) => {
          t.channels.delete(name);
          this.#post(t, { t: 'subend', channel: name, kicked: true, message });
        });
      });
      sub.on('error', (e) => {
        this.#channels.delete(name);
        each((t) => {
          t.channels.delete(name);
          this.#post(t, { t: 'subend', channel: name, kicked: false, error: toErrorObject(e) });
        });
      });
      void (async () => {
        try {
          for await (const p of sub) {
            // The gap rides on the publication it precedes; tabs got it as its own message.
            const { gap: _gap, ...plain } = p;
            each((t) => this.#post(t, { t: 'pub', p: plain }));
          }
        } catch {
          // Refused: reported by the error listener.
        }
      })();
    }
    const wasThere = ch.tabs.has(tab);
    ch.tabs.add(tab);
    if (ch.subscribed && !wasThere) this.#post(tab, { t: 'subscribed', channel: name, position: ch.sub.position });
  }

  #unsubscribe(tab: Tab, name: string): void {
    tab.channels.delete(name);
    const ch = this.#channels.get(name);
    if (!ch) return;
    ch.tabs.delete(tab);
    if (ch.tabs.size === 0) {
      this.#channels.delete(name);
      ch.sub.unsubscribe();
    }
  }

  async #serverInvoke(procedure: string, data: unknown): Promise<unknown> {
    // The tab that registered last answers (the freshest page).
    const tabs = [...this.#tabs].filter((t) => t.handles.includes(procedure));
    const tab = tabs[tabs.length - 1];
    if (!tab) throw new RemoteError({ name: 'NoSuchProcedureError', message: `no tab handles ${procedure}` });
    const id = ++this.#invokeId;
    return new Promise((resolve, reject) => {
      // A tab that never answers must not keep the entry: the server gave up by then too.
      const timer = setTimeout(() => {
        if (!this.#invokes.delete(id)) return;
        reject(new RemoteError({ name: 'TimeoutError', message: `the tab did not answer ${procedure}` }));
      }, this.options.invokeTimeout ?? INVOKE_TIMEOUT);
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      this.#invokes.set(id, { tab, resolve: done(resolve), reject: done(reject) });
      this.#post(tab, { t: 'sinvoke', id, procedure, data });
    });
  }

  #pingTabs(): void {
    const now = Date.now();
    const timeout = this.options.portTimeout ?? PORT_TIMEOUT;
    for (const tab of [...this.#tabs]) {
      if (now - tab.seen > timeout) this.#drop(tab);
      else this.#post(tab, { t: 'ping' });
    }
  }

  /** Forgets a closed tab and everything only it wanted. */
  #drop(tab: Tab): void {
    if (!this.#tabs.delete(tab)) return;
    for (const name of [...tab.channels]) this.#unsubscribe(tab, name);
    tab.receives.clear();
    tab.handles = [];
    this.#pruneReceivers();
    this.#pruneHandlers();
    for (const [id, w] of this.#invokes) {
      if (w.tab !== tab) continue;
      this.#invokes.delete(id);
      w.reject(fromErrorObject(toErrorObject(new BadConnectionError('the tab answering the invoke closed'))));
    }
    try {
      tab.port.close();
    } catch {
      // Closed already.
    }
  }

  #pruneReceivers(): void {
    for (const [event, off] of this.#receivers) {
      if (![...this.#tabs].some((t) => t.receives.has(event))) {
        off();
        this.#receivers.delete(event);
      }
    }
  }

  #pruneHandlers(): void {
    for (const [event, off] of this.#handlers) {
      if (![...this.#tabs].some((t) => t.handles.includes(event))) {
        off();
        this.#handlers.delete(event);
      }
    }
  }

  /**
   * The client closed for good (the server closed with 1000): its channels
   * ended (the tabs' subscriptions end too), and the next tab that says
   * hello (a reload) gets a new connection.
   */
  #forget(): void {
    this.#client = null;
    for (const [name, ch] of this.#channels) {
      for (const t of ch.tabs) {
        t.channels.delete(name);
        this.#post(t, { t: 'subend', channel: name, kicked: false });
      }
    }
    this.#channels.clear();
    this.#receivers.clear();
    this.#handlers.clear();
    for (const t of this.#tabs) {
      t.receives.clear();
      t.handles = [];
    }
    this.#tabs.clear();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Stops the hub (tests): closes the client and the ports. */
  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    for (const tab of [...this.#tabs]) this.#drop(tab);
    this.#client?.close();
    this.#client = null;
  }
}
