/**
 * Opening a WebSocket in any runtime: the global `WebSocket` (browsers,
 * Node 22+, Deno, Bun) or the `ws` package (Node 20, which has no global
 * one), loaded only when needed so that browsers never see it. With `ws`
 * the client can also read an HTTP 503's `Retry-After` on a refused
 * upgrade, which a browser cannot.
 * @module
 */

/** The part of the WebSocket interface the client uses. */
export interface SocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

/** A WebSocket constructor. */
export type WebSocketConstructor = new (url: string) => SocketLike;

/** What a refused upgrade told (only known with `ws`). */
export interface UpgradeRefusal {
  status: number;
  retryAfter: string | undefined;
}

/** An opened socket and, with `ws`, a way to learn why an upgrade was refused. */
export interface Opened {
  socket: SocketLike;
  refusal: () => UpgradeRefusal | null;
}

let wsModule: Promise<WebSocketConstructor> | null = null;

async function loadWs(): Promise<WebSocketConstructor> {
  // A variable specifier keeps bundlers from pulling `ws` into browser bundles.
  const name = 'ws';
  const mod = (await import(/* @vite-ignore */ name)) as { WebSocket?: unknown; default?: unknown };
  return (mod.WebSocket ?? mod.default) as WebSocketConstructor;
}

/** Opens a socket with `ctor`, the global WebSocket, or `ws`, in that order. */
export async function openSocket(url: string, ctor?: WebSocketConstructor): Promise<Opened> {
  let refusal: UpgradeRefusal | null = null;
  if (ctor) return { socket: new ctor(url), refusal: () => null };
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return { socket: new global(url), refusal: () => null };
  wsModule ??= loadWs().catch((e: unknown) => {
    wsModule = null;
    throw new Error(
      `no global WebSocket in this runtime and the ws package cannot be loaded (npm i ws): ${String(e)}`,
    );
  });
  const Ws = await wsModule;
  const socket = new Ws(url) as SocketLike & {
    on?: (ev: string, f: (...a: never[]) => void) => void;
    terminate?: () => void;
  };
  socket.on?.('unexpected-response', ((_req: unknown, res: { statusCode?: number; headers?: Record<string, string> }) => {
    refusal = { status: res.statusCode ?? 0, retryAfter: res.headers?.['retry-after'] };
    // ws leaves the socket open until the response is consumed; end it.
    socket.terminate?.();
  }) as never);
  return { socket, refusal: () => refusal };
}
