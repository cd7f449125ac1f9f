// The listeners of a plane started by a test: TCP on a free loopback port, no WebSocket, gRPC or
// Unix socket (the admin HTTP address each test sets itself). Spread into `loadConfig` overrides.
export const TCP_ONLY = { tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off' } as const;
