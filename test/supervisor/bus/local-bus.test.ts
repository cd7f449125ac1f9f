// The in-process bus against the Bus contract: it delivers synchronously, so it settles at once.
import { LocalBus } from '../../../supervisor/bus/local-bus.js';
import { busContract } from './bus-contract.js';

busContract('LocalBus', async (onHandlerError) => {
  const bus = new LocalBus(onHandlerError);
  return { bus, settle: async () => {}, close: () => bus.close() };
});
