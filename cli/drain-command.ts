// `muster drain NODE_ID`: the node finishes its running jobs and takes no new ones.
import { Command } from 'commander';
import { createApiClient, withClientOptions, type ClientOptions } from './api-client.js';

export function drainCommand(): Command {
  return withClientOptions(new Command('drain'))
    .description('drain a node: it finishes its running jobs and takes no new ones')
    .argument('<node-id>')
    .action(async (nodeId: string, options: ClientOptions) => {
      const client = await createApiClient(options);
      await client.post(`/v1/nodes/${encodeURIComponent(nodeId)}/drain`);
      process.stdout.write(`draining node ${nodeId}\n`);
    });
}
