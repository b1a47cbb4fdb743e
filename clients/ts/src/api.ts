/**
 * The client's public shape, shared by the direct client (one socket per
 * tab or process, {@link HeraldClient}) and the shared-worker client (one
 * socket per origin, {@link SharedClient}), so that the app's code is the
 * same in both modes.
 * @module
 */

import type { HeraldError } from './errors.js';
import type { PresenceEvent, SubscribeOptions, Subscription } from './subscription.js';
import type { Gap, StreamPosition } from './tracker.js';

/** The connection's state. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Everything the client tells the app about, by event name. */
export interface ClientEvents {
  [event: string]: unknown;
  /** The connection's state changed. */
  state: ConnectionState;
  /** A handshake succeeded. */
  connect: { id: string; isAuthenticated: boolean };
  /** The connection closed (a reconnect follows unless the client was closed). */
  disconnect: { code: number; reason: string };
  /** The next attempt is in `delay` ms. */
  reconnecting: { delay: number; attempt: number };
  /** The socket is authenticated with `token` (logged in here, in another tab, or renewed). */
  authenticate: { token: string; claims: Record<string, unknown> | null };
  /** The socket lost its token (logout here or in another tab, expiry, refused token). */
  deauthenticate: undefined;
  /** Publications on a channel were lost for good. */
  gap: Gap;
  join: PresenceEvent;
  leave: PresenceEvent;
  /** The server removed the socket from a channel. */
  kickOut: { channel: string; message: unknown };
  /** Something failed outside any request the app awaits (a refused token in the handshake…). */
  error: HeraldError;
}

/** Options of a request. */
export interface RequestOptions {
  /** Give up after this many ms (default: the client's `ackTimeout`). */
  timeout?: number;
}

/** Options of a publish. */
export interface PublishOptions extends RequestOptions {
  /** Wait for the server's acknowledgement (default true). */
  ack?: boolean;
}

/** Options of a history read. */
export interface HistoryOptions extends RequestOptions {
  /** At most this many publications (default and cap: the channel's history size). */
  limit?: number;
  /** Publications after this position, oldest first (else the latest). */
  since?: StreamPosition;
}

/** A page of history. */
export interface HistoryPage<T = unknown> {
  publications: { offset: number; data: T }[];
  /** The stream's latest offset. */
  offset: number;
  epoch: string;
}

/** Who is subscribed to a channel, by socket id. */
export type Presence = Record<string, { user: string | null; info: unknown }>;

/** Counts of {@link Presence}. */
export interface PresenceStats {
  clients: number;
  users: number;
}

/** Answers a server's invoke; its result (or thrown error) is the reply. */
export type InvokeHandler = (data: unknown) => unknown | Promise<unknown>;

/** What both client modes offer. */
export interface Client {
  /** The connection's state. */
  readonly state: ConnectionState;
  /** The socket's id on the server (once connected). */
  readonly id: string | null;
  /** Whether the socket is authenticated. */
  readonly isAuthenticated: boolean;
  /** The current token, or null. */
  readonly authToken: string | null;
  /** The current token's claims (decoded, not verified), or null. */
  readonly claims: Record<string, unknown> | null;
  /** Listens to an event; returns a function removing the listener. */
  on<K extends keyof ClientEvents>(event: K, listener: (v: ClientEvents[K]) => void): () => void;
  /** Resolves when the connection is open (at once if it is). */
  ready(): Promise<void>;
  /** Subscribes to a channel. */
  subscribe<T = unknown>(channel: string, options?: SubscribeOptions): Subscription<T>;
  /** Publishes on a channel; with `ack` (default) resolves once the server took it. */
  publish(channel: string, data: unknown, options?: PublishOptions): Promise<void>;
  /** Invokes a procedure and resolves with its reply. */
  invoke<R = unknown>(procedure: string, data?: unknown, options?: RequestOptions): Promise<R>;
  /** Sends a one-way event. */
  transmit(event: string, data?: unknown): void;
  /** Answers the server's invokes of `procedure`; returns a function removing the handler. */
  handle(procedure: string, handler: InvokeHandler): () => void;
  /** Receives the server's transmits of `event`; returns a function removing the listener. */
  receive(event: string, listener: (data: unknown) => void): () => void;
  /** Authenticates with a token (and stores it, which logs in the other tabs). */
  authenticate(token: string): Promise<boolean>;
  /** Drops the token (and logs out the other tabs). */
  deauthenticate(): Promise<void>;
  /** Reads a channel's history. */
  history<T = unknown>(channel: string, options?: HistoryOptions): Promise<HistoryPage<T>>;
  /** Who is subscribed to a channel. */
  presence(channel: string, options?: RequestOptions): Promise<Presence>;
  /** How many are subscribed to a channel. */
  presenceStats(channel: string, options?: RequestOptions): Promise<PresenceStats>;
  /** Closes the client for good: ends every subscription, fails what waits. */
  close(): void;
}
