// The node actor's state machine as plain JSON for the visualizer (`GET /v1/machines/node`):
// computed from the real machine definition with @xstate/graph's `toDirectedGraph`, so the page
// draws what the plane runs, not a drawing of it. Guards are named on their edges; a transition
// with no target (it changes no state) is kept, marked `targetless`, so the page can list it.
import { toDirectedGraph } from '@xstate/graph';
import { nodeMachine, type NodeState } from '../../actors/node-machine.js';

export interface MachineGraphEdge {
  source: string;
  target: string;
  /** The event: `Heartbeat`, `drain`, or `after livenessCheck` for a timer. */
  event: string;
  guard?: string;
  /** No target: the transition runs actions in its state and leaves it as it is. */
  targetless?: true;
  /** Leaves and enters its own state again (a timer that re-arms). */
  reenter?: true;
}

export interface MachineGraphNode {
  /** `node.online.ready`. */
  id: string;
  key: string;
  type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** The id of the initial child of a compound state. */
  initial?: string;
  children: MachineGraphNode[];
  edges: MachineGraphEdge[];
}

export interface MachineGraph {
  root: MachineGraphNode;
  /** The state node each API state (`NodeView.state`) is. */
  states: Record<NodeState, string>;
}

let cached: MachineGraph | undefined;

/** The node machine's graph, computed once. */
export function nodeMachineGraph(): MachineGraph {
  cached ??= {
    root: toNode(toDirectedGraph(nodeMachine)),
    states: {
      registering: 'node.registering',
      ready: 'node.online.ready',
      busy: 'node.online.busy',
      draining: 'node.online.draining',
      dead: 'node.dead',
    },
  };
  return cached;
}

type Directed = ReturnType<typeof toDirectedGraph>;

function toNode(graph: Directed): MachineGraphNode {
  const stateNode = graph.stateNode;
  const node: MachineGraphNode = {
    id: graph.id,
    key: stateNode.key,
    type: stateNode.type,
    children: graph.children.map(toNode),
    edges: graph.edges.map((edge) => {
      const out: MachineGraphEdge = { source: edge.source.id, target: edge.target.id, event: eventName(edge.label.text) };
      const guard = guardName(edge.transition.guard);
      if (guard !== undefined) out.guard = guard;
      if (edge.transition.target === undefined) out.targetless = true;
      if (edge.transition.reenter) out.reenter = true;
      return out;
    }),
  };
  const initial = stateNode.initial?.target[0]?.id;
  if (initial !== undefined) node.initial = initial;
  return node;
}

/** `xstate.after.livenessCheck.node.online.ready` reads `after livenessCheck`. */
function eventName(text: string): string {
  const after = /^xstate\.after\.([^.]+)\./.exec(text);
  return after === null ? text : `after ${after[1]}`;
}

function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && 'type' in guard && typeof guard.type === 'string') return guard.type;
  if (typeof guard === 'function') {
    const inner = (guard as { guards?: unknown[] }).guards;
    if (guard.name === 'not' && inner?.length === 1) return `!${guardName(inner[0]) ?? '?'}`;
    return guard.name === '' ? 'guard' : guard.name;
  }
  return undefined;
}
