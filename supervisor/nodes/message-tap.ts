// Handlers that embedders add for node messages (the library's `plane.onMessage`): each decoded,
// validated message of a registered node is shown to the handlers of its type once the plane has
// handed it to the node's actor. A handler sees; it cannot change or stop what the plane does,
// so no embedder can break a protocol rule. One that throws is logged and the others still run.
import type { Logger } from 'pino';
import type { EnvelopeOf, NodeMessage, NodeMessageType } from '../../protocol/messages.js';

/** What a handler knows of the sender. */
export interface MessageSender {
  nodeId: string;
}

export type MessageHandler<T extends NodeMessageType> = (message: EnvelopeOf<T>, sender: MessageSender) => void;

export class MessageTap {
  readonly #handlers = new Map<NodeMessageType, Set<MessageHandler<NodeMessageType>>>();
  #count = 0;

  constructor(private readonly logger: Pick<Logger, 'error'>) {}

  /** Adds `handler` for messages of `type`; returns the function that removes it. */
  add<T extends NodeMessageType>(type: T, handler: MessageHandler<T>): () => void {
    const handlers = this.#handlers.get(type) ?? new Set();
    this.#handlers.set(type, handlers);
    const h = handler as MessageHandler<NodeMessageType>;
    if (!handlers.has(h)) this.#count++;
    handlers.add(h);
    return () => {
      if (handlers.delete(h)) this.#count--;
    };
  }

  /** True when any handler listens: with none, a message costs one check. */
  get active(): boolean {
    return this.#count > 0;
  }

  show(message: NodeMessage, sender: MessageSender): void {
    const handlers = this.#handlers.get(message.type);
    if (handlers === undefined) return;
    for (const handler of handlers) {
      try {
        handler(message, sender);
      } catch (err) {
        this.logger.error({ err, type: message.type, node_id: sender.nodeId }, 'message handler failed');
      }
    }
  }
}
