// The cluster format: one number for everything replicas keep on NATS and read from each other
// (job docs and log chunks in JetStream, the KV values of leases, owners, tokens and revocations,
// artifact chunks, the bus events' encoding, the node command codec). Replicas of different
// formats would misread each other's records, so they refuse to run together (format-guard.ts).
//
// Bump it by one in the change that alters any of these so that a replica of the release before
// would misread or refuse what this build writes, or this build what that one wrote: a field
// renamed, removed or retyped, an encoding or a codec changed, a key, subject or stream moved.
// A field added that older readers ignore and newer readers do without needs no bump. A bump
// means an upgrade stops every replica and starts them all on the new build, on fresh data unless
// the change brings a migration (format-guard.ts refuses data stored under another format).
export const CLUSTER_FORMAT = 1;
