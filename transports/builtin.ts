// Imports every built-in transport for its registration side effect: the one module to
// import to make `transportFor(url)` know every scheme Muster serves.
import './grpc.js';
import './tcp.js';
import './tls.js';
import './unix.js';
import './websocket.js';
