// `muster drain NODE_ID`: the node finishes its running jobs and takes no new ones;
// `muster undrain NODE_ID` takes that back.
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

export function undrainCommand(): Command {
  return withClientOptions(new Command('undrain'))
    .description('return a draining node to service: it takes jobs again')
    .argument('<node-id>')
    .action(async (nodeId: string, options: ClientOptions) => {
      const client = await createApiClient(options);
      await client.post(`/v1/nodes/${encodeURIComponent(nodeId)}/undrain`);
      process.stdout.write(`undrain requested for node ${nodeId}: it is ready once it says so (muster nodes)\n`);
    });
}
