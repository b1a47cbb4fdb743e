/**
 * The client's channels: which subscriptions want each channel, where each
 * channel's stream stands ({@link Tracker}), and what a publication, a
 * subscribe reply, a gap notice or a kick does to them. One server
 * subscription per channel however many {@link Subscription}s the app holds
 * on it. Kept apart from the socket so that the recovery rules are
 * unit-tested without one.
 * @module
 */

import type { HeraldError } from './errors.js';
import type { Publication, PresenceEvent, Subscription } from './subscription.js';
import { Tracker, positionOf, type Gap, type StreamPosition } from './tracker.js';

/** The server's view of one channel. */
export type ChannelStatus = 'unsubscribed' | 'pending' | 'subscribed';

/** One channel. */
export interface Channel {
  readonly name: string;
  readonly tracker: Tracker;
  readonly subs: Set<Subscription<unknown>>;
  status: ChannelStatus;
  /** The cid of the subscribe in flight. */
  cid: number | null;
  /** Whether the subscribe in flight asked to recover. */
  recovering: boolean;
}

/** The channels, by name. */
export class Channels {
  readonly #map = new Map<string, Channel>();
  /** Called with every gap (the client's `gap` event). */
  onGap: (gap: Gap) => void = () => {};

  /** The channel, if any subscription wants it. */
  get(name: string): Channel | undefined {
    return this.#map.get(name);
  }

  /** Every channel. */
  all(): Channel[] {
    return [...this.#map.values()];
  }

  /** Adds a subscription; returns its channel and whether it is new (needs a subscribe). */
  add(sub: Subscription<unknown>, since: StreamPosition | null): { channel: Channel; created: boolean } {
    let channel = this.#map.get(sub.channel);
    let created = false;
    if (!channel) {
      channel = {
        name: sub.channel,
        tracker: new Tracker(sub.channel, since),
        subs: new Set(),
        status: 'unsubscribed',
        cid: null,
        recovering: false,
      };
      this.#map.set(sub.channel, channel);
      created = true;
    }
    channel.subs.add(sub);
    sub._seed(channel.tracker.position);
    if (channel.status === 'subscribed') sub._subscribed(channel.tracker.position);
    return { channel, created };
  }

  /** Removes a subscription; returns the channel when no subscription wants it any more (unsubscribe it). */
  remove(sub: Subscription<unknown>): Channel | null {
    const channel = this.#map.get(sub.channel);
    if (!channel || !channel.subs.delete(sub) || channel.subs.size > 0) return null;
    this.#map.delete(sub.channel);
    return channel;
  }

  /** The `#subscribe` data for a channel (with `recover` when a position is known). */
  subscribeData(channel: Channel): { channel: string; recover?: StreamPosition } {
    const recover = channel.tracker.recover();
    channel.recovering = recover !== null;
    return recover ? { channel: channel.name, recover } : { channel: channel.name };
  }

  /** A `#publish` from the server. */
  publication(data: unknown): void {
    if (data === null || typeof data !== 'object') return;
    const d = data as { channel?: unknown; data?: unknown; offset?: unknown; epoch?: unknown };
    if (typeof d.channel !== 'string') return;
    const channel = this.#map.get(d.channel);
    if (!channel) return;
    const at = positionOf(d);
    const verdict = channel.tracker.onPublication(at);
    if (verdict.kind === 'duplicate') return;
    if (verdict.kind === 'afterGap') this.#gap(channel, verdict.gap);
    const p: Publication = { channel: d.channel, data: d.data };
    if (at) {
      p.offset = at.offset;
      p.epoch = at.epoch;
    }
    for (const sub of channel.subs) sub._deliver(p);
  }

  /** A subscribe reply's data (`{offset, epoch, recovered?}` on a channel with history, else nothing). */
  subscribed(channel: Channel, data: unknown): void {
    channel.status = 'subscribed';
    channel.cid = null;
    const top = positionOf(data);
    if (top) {
      const recovered = (data as { recovered?: unknown }).recovered;
      const gap = channel.tracker.onReply(
        top,
        typeof recovered === 'boolean' ? recovered : undefined,
        channel.recovering,
      );
      if (gap) this.#gap(channel, gap);
    }
    channel.recovering = false;
    for (const sub of channel.subs) sub._subscribed(channel.tracker.position);
  }

  /** The subscribe was refused: every subscription of the channel fails and the channel is dropped. */
  refused(channel: Channel, error: HeraldError): void {
    this.#map.delete(channel.name);
    for (const sub of [...channel.subs]) sub._fail(error);
  }

  /** `#herald/unrecoverable`. */
  unrecoverable(data: unknown): void {
    const d = data as { channel?: unknown } | null;
    if (!d || typeof d.channel !== 'string') return;
    const channel = this.#map.get(d.channel);
    const resume = positionOf(d);
    if (!channel || !resume) return;
    const gap = channel.tracker.onUnrecoverable(resume);
    if (gap) this.#gap(channel, gap);
  }

  /** `#kickOut`: the channel's subscriptions end. */
  kicked(name: string, message: unknown): void {
    const channel = this.#map.get(name);
    if (!channel) return;
    this.#map.delete(name);
    for (const sub of [...channel.subs]) sub._kicked(message);
  }

  /** `#herald/join` and `#herald/leave`. */
  presence(kind: 'join' | 'leave', e: PresenceEvent): void {
    const channel = this.#map.get(e.channel);
    if (!channel) return;
    for (const sub of channel.subs) sub.events.emit(kind, e);
  }

  /** The connection dropped: every channel needs a new subscribe. */
  disconnected(): void {
    for (const c of this.#map.values()) {
      c.status = 'unsubscribed';
      c.cid = null;
      c.recovering = false;
    }
  }

  /** The client closed: every subscription ends. */
  endAll(): void {
    for (const c of this.#map.values()) for (const sub of [...c.subs]) sub._end();
    this.#map.clear();
  }

  #gap(channel: Channel, gap: Gap): void {
    for (const sub of channel.subs) sub._gap(gap);
    this.onGap(gap);
  }
}
