import type net from 'node:net';

/**
 * Write through a socket corked until the end of this callback (`nextTick`, the default), so
 * every answer or request produced in it leaves in one syscall (socket writes were the largest
 * CPU cost under load); or, with `setImmediate`, until the event loop has run every callback
 * that was ready: for one connection written from many callbacks in a row, such as a follower
 * passing writes to the leader (each client's request arrives in a callback of its own, and
 * every forwarded request was a syscall of its own).
 */
export function coalescedWrite(socket: net.Socket, data: string | Uint8Array, until: (flush: () => void) => void = process.nextTick): void {
  if (socket.destroyed) return;
  if (socket.writableCorked === 0) {
    socket.cork();
    until(() => socket.uncork());
  }
  socket.write(data);
}
