/**
 * The SocketCluster v2 frames the client reads and writes, as plain data
 * (no IO). A message is one frame, a batch (an array of frames), or the
 * empty string (the server's ping, the client's pong). Reading is defensive:
 * a message that is not a frame is ignored, never thrown on.
 * @module
 */

/** A frame from the server, loosely typed: the client checks each field it uses. */
export interface Frame {
  event?: string;
  data?: unknown;
  cid?: number;
  rid?: number;
  error?: unknown;
}

/** What one message from the server holds. */
export type Incoming = { kind: 'ping' } | { kind: 'frames'; frames: Frame[] };

/** Parses a message; malformed input gives no frames. */
export function parseMessage(raw: unknown): Incoming {
  if (typeof raw !== 'string') return { kind: 'frames', frames: [] };
  if (raw === '') return { kind: 'ping' };
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return { kind: 'frames', frames: [] };
  }
  const list = Array.isArray(v) ? v : [v];
  return { kind: 'frames', frames: list.filter(isFrame) };
}

function isFrame(v: unknown): v is Frame {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Encodes a frame. */
export function encode(frame: Frame): string {
  return JSON.stringify(frame);
}

/** Events the protocol reserves (never handed to the app's receivers). */
export const RESERVED = new Set([
  '#publish',
  '#setAuthToken',
  '#removeAuthToken',
  '#kickOut',
  '#herald/join',
  '#herald/leave',
  '#herald/unrecoverable',
]);

/** Decodes a JWT's claims without checking it (the server checks; the app only reads who it is). */
export function decodeClaims(token: string | null): Record<string, unknown> | null {
  if (!token) return null;
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bin = atob(padded);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const v: unknown = JSON.parse(new TextDecoder().decode(bytes));
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
