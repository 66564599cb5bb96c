import type net from 'node:net';

/**
 * Write through a socket corked until the end of this event-loop turn, so every answer or
 * request produced in one turn leaves in one syscall (socket writes were the largest CPU cost
 * under load).
 */
export function coalescedWrite(socket: net.Socket, data: string | Uint8Array): void {
  if (socket.destroyed) return;
  if (socket.writableCorked === 0) {
    socket.cork();
    process.nextTick(() => socket.uncork());
  }
  socket.write(data);
}

/**
 * Like coalescedWrite, but corked until the event loop has run every callback that was ready
 * (setImmediate): for one connection written from many callbacks in a row, such as a follower
 * passing writes to the leader, each client's request arriving in a callback of its own. With
 * coalescedWrite every forwarded request was one syscall.
 */
export function writeAfterReadyCallbacks(socket: net.Socket, data: string | Uint8Array): void {
  if (socket.destroyed) return;
  if (socket.writableCorked === 0) {
    socket.cork();
    setImmediate(() => socket.uncork());
  }
  socket.write(data);
}
