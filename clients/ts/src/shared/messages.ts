/**
 * The messages between a tab ({@link SharedClient}) and the shared worker
 * ({@link Hub}) over the tab's MessagePort. Plain structured-clone data:
 * errors travel as error objects and are rebuilt on the tab's side.
 * @module
 */

import type { ClientEvents, ConnectionState } from '../api.js';
import type { ErrorObject } from '../errors.js';
import type { ReconnectOptions } from '../backoff.js';
import type { Publication, PresenceEvent } from '../subscription.js';
import type { Gap, StreamPosition } from '../tracker.js';

/** The requests a tab forwards to the worker's client. */
export type Op = 'invoke' | 'publish' | 'history' | 'presence' | 'presenceStats' | 'authenticate' | 'deauthenticate';

/** The client settings the first tab gives the worker. */
export interface HelloOptions {
  url: string;
  reconnect?: ReconnectOptions;
  ackTimeout?: number;
  connectTimeout?: number;
  maxQueued?: number;
}

/** Tab to worker. */
export type ToWorker =
  | { t: 'hello'; options: HelloOptions; token: string | null }
  | { t: 'pong' }
  | { t: 'bye' }
  | { t: 'req'; id: number; op: Op; args: unknown[] }
  | { t: 'transmit'; event: string; data: unknown }
  | { t: 'sub'; channel: string; since?: StreamPosition }
  | { t: 'unsub'; channel: string }
  | { t: 'receive' | 'unreceive' | 'handle' | 'unhandle'; event: string }
  | { t: 'sreply'; id: number; ok: boolean; value?: unknown; error?: ErrorObject };

/** Worker to tab. */
export type ToTab =
  | { t: 'welcome'; state: ConnectionState; id: string | null; token: string | null; authenticated: boolean }
  | { t: 'ping' }
  | { t: 'res'; id: number; ok: boolean; value?: unknown; error?: ErrorObject }
  | { t: 'state'; state: ConnectionState; id: string | null }
  | { t: 'event'; name: 'connect'; value: ClientEvents['connect'] }
  | { t: 'event'; name: 'disconnect'; value: ClientEvents['disconnect'] }
  | { t: 'event'; name: 'reconnecting'; value: ClientEvents['reconnecting'] }
  | { t: 'event'; name: 'kickOut'; value: ClientEvents['kickOut'] }
  | { t: 'error'; error: ErrorObject }
  | { t: 'auth'; token: string }
  | { t: 'deauth' }
  | { t: 'pub'; p: Publication }
  | { t: 'subscribed'; channel: string; position: StreamPosition | null }
  | { t: 'gap'; gap: Gap }
  | { t: 'presence'; kind: 'join' | 'leave'; e: PresenceEvent }
  /** A channel ended: kicked out, refused (`error`), or the connection closed for good (neither). */
  | { t: 'subend'; channel: string; kicked: boolean; message?: unknown; error?: ErrorObject }
  | { t: 'transmit'; event: string; data: unknown }
  | { t: 'sinvoke'; id: number; procedure: string; data: unknown };

/** How often the worker pings its tabs, ms. */
export const PING_INTERVAL = 1000;
/** A tab silent for this long is gone (a SharedWorker gets no close event from a port). */
export const PORT_TIMEOUT = 4000;
