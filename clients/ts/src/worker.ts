/**
 * The SharedWorker script of shared mode: serve it (as `dist/worker.js`,
 * a module worker) and pass its URL as `shared.worker`. Every tab that opens
 * it with the same URL and name gets a port to one {@link Hub}, hence one
 * WebSocket for the whole origin.
 * @module
 */

import { Hub } from './shared/hub.js';

export { Hub, type HubOptions, type PortLike } from './shared/hub.js';

interface ConnectEvent {
  ports: readonly MessagePort[];
}

const scope = globalThis as unknown as { onconnect?: (e: ConnectEvent) => void; SharedWorkerGlobalScope?: unknown };
if (typeof scope.SharedWorkerGlobalScope !== 'undefined') {
  const hub = new Hub();
  scope.onconnect = (e) => {
    const port = e.ports[0];
    if (port) hub.attach(port);
  };
}
