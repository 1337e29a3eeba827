/**
 * The network between nodes: DESIGN.md's `Transport`. It is the `PeerMessenger` interface of
 * src/net/peer-messenger.ts — request/response with correlation ids and timeouts, one-way
 * notifications, typed RpcError codes — re-exported here beside Clock, Random and FileSystem.
 *
 * Two implementations, one conformance suite (src/net/messenger-conformance.ts):
 * - real: TCP with length-prefixed MessagePack frames, a versioned handshake, reconnect with
 *   capped back-off and bounded send queues (src/net/tcp-messenger.ts);
 * - simulated: the in-memory network (src/net/memory-messenger.ts), delivered through an
 *   injected Clock, with partitions; the simulator (src/sim/) drives it on virtual time and is
 *   the one that adds seeded loss and delay.
 * Node code depends on this interface only, never on a concrete messenger.
 */
export type {
  MessageBody,
  NotifyOutcome,
  PeerAddress,
  PeerIdentity,
  PeerMessenger,
  PeerMessenger as Transport,
  RequestHandler,
  RequestOptions,
  RpcErrorCode,
} from '../net/peer-messenger.js';
export { RpcError, addressKey, isRpcError } from '../net/peer-messenger.js';
