// The raw baseline of the benchmarks: a `net` server that echoes every byte back,
// run as its own process like the plane. Prints its port on stdout.
import { createServer } from 'node:net';

const server = createServer((socket) => {
  socket.setNoDelay(true);
  socket.pipe(socket);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address !== null && typeof address === 'object') process.stdout.write(`${address.port}\n`);
});
