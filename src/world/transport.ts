/**
 * The network between nodes. Peers exchange framed messages; the TCP implementation (src/net/)
 * and the simulator's in-memory network both implement this interface, and one conformance
 * suite will run against both. A single node (this release) starts no transport; the interface
 * is fixed now so that the cluster does not rewrite the node runtime.
 */
export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

export interface InboundMessage {
  /** The sending node's id, as given in its handshake. */
  readonly fromNodeId: string;
  readonly payload: Uint8Array;
}

export type SendOutcome =
  /** Queued for delivery; delivery is not guaranteed (the peer may be down). */
  | 'queued'
  /** The send queue to that peer is full: back off (back-pressure, never unbounded memory). */
  | 'queue-full';

export interface Transport {
  /** Starts listening; `onMessage` is called for every message that arrives. */
  start(onMessage: (message: InboundMessage) => void): Promise<void>;
  /** Sends one message to a peer, connecting (and reconnecting with back-off) as needed. */
  send(to: PeerAddress, payload: Uint8Array): SendOutcome;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}
