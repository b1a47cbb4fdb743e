/**
 * Where the client stands in one channel's stream, and what follows from a
 * publication or a subscribe reply: deliver, drop a duplicate, or report a
 * gap. The same rules as the Rust client (`herald-client`'s recovery):
 *
 * - a publication at or before the last offset of the same epoch is a
 *   duplicate (delivered already) and is dropped;
 * - a publication more than one past the last offset, or in another epoch,
 *   comes after a hole: a gap is reported, then it is delivered;
 * - a subscribe reply names the top of the stream: `recovered: false` is a
 *   gap, and so is a top past the last offset or in another epoch;
 * - `#herald/unrecoverable` is a gap the server announces.
 *
 * Pure logic: no socket, no clock.
 * @module
 */

/** A place in a channel's stream. */
export interface StreamPosition {
  /** Offset of the publication (1, 2, 3, … per epoch). */
  offset: number;
  /** The stream's epoch (changes when its history is lost). */
  epoch: string;
}

/** How a gap was detected. */
export type GapCause = 'notRecovered' | 'announced' | 'offsetJump' | 'epochChanged';

/** Publications on a channel were lost and will not be delivered. */
export interface Gap {
  /** The channel. */
  channel: string;
  /** How the loss was detected. */
  cause: GapCause;
  /** The last position the client had, when it had one. */
  last: StreamPosition | null;
  /** The stream goes on after this position. */
  resume: StreamPosition;
}

/** What to do with a publication. */
export type Verdict = { kind: 'deliver' } | { kind: 'duplicate' } | { kind: 'afterGap'; gap: Gap };

/** Reads a position from a frame's fields, when it has a valid one. */
export function positionOf(v: unknown): StreamPosition | null {
  if (v === null || typeof v !== 'object') return null;
  const o = v as { offset?: unknown; epoch?: unknown };
  if (typeof o.offset !== 'number' || !Number.isSafeInteger(o.offset) || o.offset < 0) return null;
  if (typeof o.epoch !== 'string') return null;
  return { offset: o.offset, epoch: o.epoch };
}

/** The last known position of one channel. */
export class Tracker {
  constructor(
    readonly channel: string,
    public position: StreamPosition | null = null,
  ) {}

  /** The `recover` field of the next subscribe, when a position is known. */
  recover(): StreamPosition | null {
    return this.position ? { ...this.position } : null;
  }

  /** A publication arrived at `at` (null on a channel without history). */
  onPublication(at: StreamPosition | null): Verdict {
    if (!at) return { kind: 'deliver' };
    const last = this.position;
    if (!last) {
      this.position = at;
      return { kind: 'deliver' };
    }
    if (last.epoch !== at.epoch) {
      this.position = at;
      return {
        kind: 'afterGap',
        gap: this.#gap('epochChanged', last, { offset: Math.max(0, at.offset - 1), epoch: at.epoch }),
      };
    }
    if (at.offset <= last.offset) return { kind: 'duplicate' };
    this.position = at;
    if (at.offset > last.offset + 1) {
      return {
        kind: 'afterGap',
        gap: this.#gap('offsetJump', last, { offset: at.offset - 1, epoch: at.epoch }),
      };
    }
    return { kind: 'deliver' };
  }

  /**
   * A subscribe reply with `top` (the stream's latest offset) and, after a
   * `recover`, `recovered`. Returns the gap it reveals, if any.
   */
  onReply(top: StreamPosition, recovered: boolean | undefined, asked: boolean): Gap | null {
    const last = this.position;
    if (!last) {
      this.position = top;
      return null;
    }
    if (asked && recovered === false) {
      this.position = top;
      return this.#gap('notRecovered', last, top);
    }
    if (last.epoch !== top.epoch) {
      this.position = top;
      return this.#gap('epochChanged', last, top);
    }
    if (top.offset > last.offset) {
      this.position = top;
      return this.#gap('offsetJump', last, top);
    }
    return null;
  }

  /** The server announced that the stream goes on after `resume`. */
  onUnrecoverable(resume: StreamPosition): Gap | null {
    const last = this.position;
    if (last && last.epoch === resume.epoch && resume.offset <= last.offset) return null;
    this.position = resume;
    return this.#gap('announced', last, resume);
  }

  #gap(cause: GapCause, last: StreamPosition | null, resume: StreamPosition): Gap {
    return { channel: this.channel, cause, last: last ? { ...last } : null, resume: { ...resume } };
  }
}
