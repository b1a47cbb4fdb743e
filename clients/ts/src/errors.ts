/**
 * The errors the client rejects with. Every error is a `HeraldError`, so an
 * app tells them apart by `instanceof` or by `name`:
 *
 * - `TimeoutError`: no reply within the request's timeout;
 * - `BadConnectionError`: the connection dropped (or the client was closed)
 *   before the reply came; nothing is retried on the app's behalf;
 * - `RemoteError`: the server (or a procedure) answered with an error; its
 *   `name` is the server's (`ForbiddenError`, `NoSuchProcedureError`, …) and
 *   `data` the whole error object.
 * @module
 */

/** Base class of every error the client produces. */
export class HeraldError extends Error {
  constructor(message: string, name = 'HeraldError') {
    super(message);
    this.name = name;
  }
}

/** A request got no reply within its timeout. */
export class TimeoutError extends HeraldError {
  constructor(message: string) {
    super(message, 'TimeoutError');
  }
}

/** The connection dropped, or the client was closed, before the reply. */
export class BadConnectionError extends HeraldError {
  constructor(message: string) {
    super(message, 'BadConnectionError');
  }
}

/** An error object as the server sends it: `{message, name, ...}`. */
export interface ErrorObject {
  name?: string;
  message?: string;
  [key: string]: unknown;
}

/** The server answered a request with an error. */
export class RemoteError extends HeraldError {
  /** The whole error object the server sent. */
  readonly data: ErrorObject;
  constructor(data: unknown) {
    const obj: ErrorObject =
      data !== null && typeof data === 'object' ? (data as ErrorObject) : { message: String(data) };
    super(
      typeof obj.message === 'string' ? obj.message : JSON.stringify(obj),
      typeof obj.name === 'string' && obj.name !== '' ? obj.name : 'RemoteError',
    );
    this.data = obj;
  }
}

/** Turns an error into the plain object the protocol carries. */
export function toErrorObject(e: unknown): ErrorObject {
  if (e instanceof RemoteError) return e.data;
  if (e instanceof Error) return { message: e.message, name: e.name };
  if (e !== null && typeof e === 'object') return e as ErrorObject;
  return { message: String(e), name: 'Error' };
}

/** Rebuilds an error from {@link toErrorObject}'s output (across a port). */
export function fromErrorObject(o: ErrorObject): HeraldError {
  const message = typeof o.message === 'string' ? o.message : '';
  switch (o.name) {
    case 'TimeoutError':
      return new TimeoutError(message);
    case 'BadConnectionError':
      return new BadConnectionError(message);
    default:
      return new RemoteError(o);
  }
}
