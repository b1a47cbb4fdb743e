/**
 * Where the auth token lives between connections, and how the tabs of one
 * origin share it.
 *
 * A {@link TokenStore} keeps one token. The client saves the token the
 * server issues or renews (`#setAuthToken`), removes it on logout
 * (`#removeAuthToken`), reads it for each handshake, and watches it for
 * changes made elsewhere: another tab logging in, out, or receiving a renewed
 * token. On a change the client authenticates the open connection at once
 * (`#authenticate`) or deauthenticates it, without waiting for a reconnect.
 *
 * - {@link MemoryTokenStore}: one process (Node, tests);
 * - {@link BrowserTokenStore}: `localStorage` as the store, `BroadcastChannel`
 *   to tell the other tabs at once, and the `storage` event as the fallback
 *   where BroadcastChannel is missing; both deliver to the other tabs only.
 * - the app's own: implement the interface (e.g. over IndexedDB or a cookie
 *   API).
 * @module
 */

/** A place for the auth token. */
export interface TokenStore {
  /** The stored token, or null. */
  load(): string | null | Promise<string | null>;
  /** Stores a token (issued or renewed by the server, or set by the app). */
  save(token: string): void | Promise<void>;
  /** Forgets the token (logout). */
  remove(): void | Promise<void>;
  /**
   * Calls `listener` when the token was changed by someone else (another
   * tab); optional. Returns a function that stops watching.
   */
  watch?(listener: (token: string | null) => void): () => void;
}

/** Keeps the token in memory; watchers see changes made through other handles of the same store. */
export class MemoryTokenStore implements TokenStore {
  #token: string | null;
  #watchers = new Set<{ l: (t: string | null) => void; owner: object }>();
  constructor(token: string | null = null) {
    this.#token = token;
  }
  load(): string | null {
    return this.#token;
  }
  save(token: string): void {
    this.#set(token);
  }
  remove(): void {
    this.#set(null);
  }
  watch(listener: (token: string | null) => void): () => void {
    const entry = { l: listener, owner: {} };
    this.#watchers.add(entry);
    return () => this.#watchers.delete(entry);
  }
  #set(token: string | null): void {
    if (this.#token === token) return;
    this.#token = token;
    for (const w of [...this.#watchers]) w.l(token);
  }
}

/** Options of {@link BrowserTokenStore}. */
export interface BrowserTokenStoreOptions {
  /** The localStorage key (default `herald.authToken`, the BroadcastChannel is named after it). */
  key?: string;
  /** The Storage (default `globalThis.localStorage`). */
  storage?: Storage;
}

type Message = { token: string | null };

/** The token in localStorage, shared live by every tab of the origin. */
export class BrowserTokenStore implements TokenStore {
  readonly key: string;
  readonly #storage: Storage | null;
  #memory: string | null = null;

  constructor(options: BrowserTokenStoreOptions = {}) {
    this.key = options.key ?? 'herald.authToken';
    this.#storage = options.storage ?? safeLocalStorage();
  }

  load(): string | null {
    if (!this.#storage) return this.#memory;
    try {
      return this.#storage.getItem(this.key);
    } catch {
      return this.#memory;
    }
  }

  save(token: string): void {
    this.#write(token);
  }

  remove(): void {
    this.#write(null);
  }

  watch(listener: (token: string | null) => void): () => void {
    const offs: (() => void)[] = [];
    let last = this.load();
    const changed = (token: string | null) => {
      if (token === last) return;
      last = token;
      this.#memory = token;
      listener(token);
    };
    if (typeof BroadcastChannel !== 'undefined') {
      const bc = new BroadcastChannel(channelName(this.key));
      bc.onmessage = (e: MessageEvent<Message>) => {
        if (e.data && 'token' in e.data) changed(e.data.token);
      };
      offs.push(() => bc.close());
    }
    if (typeof addEventListener === 'function' && this.#storage) {
      const onStorage = (e: StorageEvent) => {
        if (e.key === this.key || e.key === null) changed(this.load());
      };
      addEventListener('storage', onStorage);
      offs.push(() => removeEventListener('storage', onStorage));
    }
    // Saves from this tab must not come back as changes.
    const own = (t: string | null) => {
      last = t;
    };
    this.#own.add(own);
    offs.push(() => this.#own.delete(own));
    return () => offs.forEach((f) => f());
  }

  #own = new Set<(t: string | null) => void>();

  #write(token: string | null): void {
    if (this.load() === token) return;
    this.#memory = token;
    try {
      if (token === null) this.#storage?.removeItem(this.key);
      else this.#storage?.setItem(this.key, token);
    } catch {
      // Storage full or denied (private mode): memory and the broadcast still work.
    }
    for (const f of this.#own) f(token);
    if (typeof BroadcastChannel !== 'undefined') {
      const bc = new BroadcastChannel(channelName(this.key));
      bc.postMessage({ token } satisfies Message);
      bc.close();
    }
  }
}

function channelName(key: string): string {
  return `herald-token:${key}`;
}

function safeLocalStorage(): Storage | null {
  try {
    return typeof localStorage !== 'undefined' ? localStorage : null;
  } catch {
    return null;
  }
}

/** The default store: {@link BrowserTokenStore} where localStorage or BroadcastChannel exists, else memory. */
export function defaultTokenStore(): TokenStore {
  if (safeLocalStorage() || typeof BroadcastChannel !== 'undefined') return new BrowserTokenStore();
  return new MemoryTokenStore();
}
