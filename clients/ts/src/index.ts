/**
 * herald-client: the TypeScript client of Herald (and of socketcluster-server
 * 20, for what that protocol has).
 *
 * `createClient` picks the mode: with `shared` and where `SharedWorker`
 * exists, every tab of the origin shares one socket through the worker
 * ({@link SharedClient}); otherwise one socket per tab or process
 * ({@link HeraldClient}), with the token synced between tabs. Both modes
 * implement {@link Client}, so the app's code is the same.
 * @module
 */

import type { Client } from './api.js';
import { HeraldClient, type ClientOptions } from './client.js';
import { SharedClient, type SharedOptions } from './shared/tab.js';

export type * from './api.js';
export { HeraldClient, type ClientOptions } from './client.js';
export { SharedClient, type SharedOptions } from './shared/tab.js';
export { Subscription, type Publication, type PresenceEvent, type SubscribeOptions, type SubscriptionEvents } from './subscription.js';
export type { Gap, GapCause, StreamPosition } from './tracker.js';
export { MemoryTokenStore, BrowserTokenStore, defaultTokenStore, type TokenStore, type BrowserTokenStoreOptions } from './tokens.js';
export { HeraldError, TimeoutError, BadConnectionError, RemoteError, type ErrorObject } from './errors.js';
export { DEFAULT_RECONNECT, type ReconnectOptions } from './backoff.js';
export type { WebSocketConstructor, SocketLike } from './transport.js';

/** Options of {@link createClient}. */
export interface CreateClientOptions extends ClientOptions {
  /**
   * Share one socket between the tabs of the origin through a SharedWorker
   * running `herald-client/worker` (its URL, e.g.
   * `new URL('herald-client/worker', import.meta.url)` with a bundler, or
   * the path where the app serves `dist/worker.js`). Ignored where
   * SharedWorker is missing (one socket per tab, tokens synced).
   */
  shared?: SharedOptions;
}

/** A client in the best mode available here (see the module doc). */
export function createClient(options: CreateClientOptions): Client {
  const { shared, ...direct } = options;
  if (shared && typeof SharedWorker !== 'undefined') return new SharedClient(direct, shared);
  return new HeraldClient(direct);
}
