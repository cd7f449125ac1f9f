// `muster node unbench NODE_ID`: lifts the circuit breaker's bench of a node (its attempts kept
// failing for reasons of its own), so that it takes jobs again at once.
import { Command } from 'commander';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';

export function nodeCommand(): Command {
  const node = new Command('node').description('act on one node');
  node.addCommand(
    withClientOptions(new Command('unbench'))
      .description('lift the bench of a node that the circuit breaker benched: it takes jobs again at once')
      .argument('<node-id>')
      .action(async (nodeId: string, options: ClientOptions) => {
        const client = await createApiClient(options);
        await client.post(`/v1/nodes/${encodeURIComponent(nodeId)}/unbench`);
        process.stdout.write(`node ${nodeId} unbenched: it takes jobs again\n`);
      }),
  );
  return node;
}
