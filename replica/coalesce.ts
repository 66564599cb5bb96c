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
