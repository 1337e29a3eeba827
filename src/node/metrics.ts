import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { AntiEntropyReport } from './anti-entropy.js';
import type { HandoffReport } from './hinted-handoff.js';
import type { TransferReport } from './transfers.js';

/** What the metrics are read from at each scrape; null: that service is not running now. */
export interface MetricsSource {
  readonly antiEntropy: () => AntiEntropyReport | null;
  readonly hints: () => HandoffReport | null;
  readonly transfers: () => TransferReport | null;
}

export interface NodeMetrics {
  readonly contentType: string;
  render(): Promise<string>;
}

/**
 * The node's Prometheus metrics (GET /metrics), on a registry of its own so several nodes can
 * share a process (tests, the simulator). Values are read from the services' reports when
 * scraped; the services keep no metric objects. Counters restart from 0 with the service.
 */
export function createNodeMetrics(nodeId: string, source: MetricsSource): NodeMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ node: nodeId });
  collectDefaultMetrics({ register: registry, prefix: 'ringkv_process_' });
  const counter = (name: string, help: string, read: () => number | undefined, labelNames: string[] = []): void => {
    new Counter({
      name, help, labelNames, registers: [registry],
      collect() {
        const value = read();
        this.reset();
        if (value !== undefined) this.inc(value);
      },
    });
  };
  const ae = (): AntiEntropyReport | undefined => source.antiEntropy() ?? undefined;
  counter('ringkv_anti_entropy_rounds_total', 'Anti-entropy rounds started (one peer\'s roots compared each).', () => ae()?.rounds);
  counter('ringkv_anti_entropy_partitions_differing_total', 'Partition root comparisons that found the replicas differing.', () => ae()?.exchangesDiffering);
  counter('ringkv_anti_entropy_objects_repaired_total', 'Objects merged here from a peer or sent to a peer that merged them.', () => ae()?.keysRepaired);
  counter('ringkv_anti_entropy_bytes_sent_total', 'Bytes of anti-entropy messages this node sent.', () => ae()?.bytesSent);
  counter('ringkv_anti_entropy_root_bytes_total', 'Tree data of root comparisons this node started, both directions.', () => ae()?.rootBytes);
  counter('ringkv_anti_entropy_level_bytes_total', 'Tree data of level walks this node started, both directions.', () => ae()?.levelBytes);
  counter('ringkv_anti_entropy_trees_rebuilt_total', 'Trees found disagreeing with their store and rebuilt.', () => ae()?.treesRebuilt);
  counter('ringkv_tombstones_reaped_total', 'Tombstones removed for good after every replica held them.', () => ae()?.reapedTombstones);
  new Gauge({
    name: 'ringkv_anti_entropy_trees', help: 'Merkle trees of the partitions this node replicates with another node, by state.', labelNames: ['state'], registers: [registry],
    collect() {
      const trees = ae()?.trees ?? [];
      const built = trees.filter((tree) => tree.built).length;
      this.set({ state: 'built' }, built);
      this.set({ state: 'building' }, trees.length - built);
    },
  });
  new Gauge({
    name: 'ringkv_anti_entropy_partitions_awaiting_transfer', help: 'Partitions gained on a ring change that anti-entropy leaves to their transfer until it completes.', registers: [registry],
    collect() {
      this.set(ae()?.awaitingTransfer ?? 0);
    },
  });
  new Gauge({
    name: 'ringkv_hints_pending', help: 'Hinted objects kept for down primaries.', registers: [registry],
    collect() {
      this.set(source.hints()?.pendingHints ?? 0);
    },
  });
  counter('ringkv_hints_delivered_total', 'Hinted objects delivered to their primaries.', () => source.hints()?.deliveredHints);
  new Gauge({
    name: 'ringkv_transfers_unfinished', help: 'Partition transfers of this node not finished.', registers: [registry],
    collect() {
      this.set((source.transfers()?.transfers ?? []).filter((transfer) => transfer.state !== 'done').length);
    },
  });
  return { contentType: registry.contentType, render: () => registry.metrics() };
}
