// Issue 7, item 5: faults under load on a cluster of real processes (N=3, W=2), one after the
// other on one cluster: kill -9, SIGSTOP, a partition, a join, a leave and a wiped disk. After
// each: every acknowledged write is readable through every live node, no acknowledged delete comes
// back, and every replica of every partition has the same Merkle root within convergeMsMax. Each
// scenario prints how long convergence took after the fault ended and how much data moved.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { statusOf } from '../helpers/cluster.js';
import {
  FaultCluster, MovedSampler, awaitConvergence, checkReads, convergenceGap, describeMoved, explainDivergence, healAllPartitions, loopbackFirewall, partition, replicasOf, sleep, startLoad,
  type LoadResult, type NodeSlot, type ReadProblem,
} from '../helpers/fault-tools.js';

/** Exchanges every 500 ms (default 1000), so that a test waits less for repair. */
const nodeArgs = ['--anti-entropy-interval-ms', '500'];
const convergeMsMax = 90_000;
/** Load before the fault starts and after it ends (writes that reach a recovering node). */
const loadBeforeFaultMs = 3000;
const loadAfterFaultMs = 3000;
/** About 40 requests a second for the ~40 s of the longest scenario: under 2,000 keys each. */
const loadShape = { ratePerSecond: 40, concurrency: 8, deleteEvery: 20, requestsMax: 2500, durationMsMax: 100_000 };
const scenarioTimeoutMs = 240_000;

interface FaultOutcome {
  /** performance.now() when the fault was over (the node back, the partition healed). */
  readonly endedAtMs: number;
  /** What the fault was, with its timings, for the scenario's line. */
  readonly note: string;
  /** The node the fault hit, if it still runs: it reads every earlier key too. */
  readonly hit?: NodeSlot;
}

interface Checked {
  readonly scenario: string;
  readonly acknowledged: readonly string[];
  readonly deleted: readonly string[];
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/** What keeps the live nodes from having converged now (undefined: nothing). */
function gapNow(cluster: FaultCluster): Promise<string | undefined> {
  const live = cluster.liveSlots();
  return convergenceGap(live.map((slot) => slot.process!), live.map((slot) => slot.nodeId)).catch((error: unknown) => `asking failed: ${String(error)}`);
}

function describeLoad(load: LoadResult): string {
  const statuses = Object.entries(load.statuses).map(([status, count]) => `${status === '0' ? 'no answer' : status}: ${count}`).join(', ');
  return `${load.acknowledged.length + load.deleted.length + load.deleteUnsure.length} writes acknowledged, ${load.failedWrites} failed; ${load.deleted.length} deletes acknowledged, ${load.deleteUnsure.length} unsure (${statuses}) in ${seconds(load.durationMs)}`;
}

describe('faults: a cluster of real processes on loopback under write load (N=3, W=2)', () => {
  let cluster: FaultCluster | undefined;
  const checkedBefore: Checked[] = [];

  before(async () => {
    const startMs = performance.now();
    cluster = await FaultCluster.start(5, nodeArgs);
    console.log(`faults: 5 nodes on ${cluster.slots.map((slot) => slot.host).join(', ')} up in ${seconds(performance.now() - startMs)}`);
  });

  after(async () => {
    if (loopbackFirewall.usable) await healAllPartitions();
    await cluster?.stopAll();
  });

  /** Load, fault, load; then convergence, figures and reads. */
  async function runScenario(scenario: string, fault: (cluster: FaultCluster) => Promise<FaultOutcome>): Promise<void> {
    assert.ok(cluster !== undefined, 'the cluster started');
    const sampler = new MovedSampler(cluster);
    const figuresBefore = await sampler.start(1000);
    const running = cluster;
    const load = startLoad({ scenario, targets: () => running.live(), ...loadShape });
    let outcome: FaultOutcome;
    let loaded: LoadResult;
    let gapAtFaultEnd: string | undefined;
    try {
      await sleep(loadBeforeFaultMs);
      outcome = await fault(cluster);
      gapAtFaultEnd = await gapNow(cluster);
      await sleep(loadAfterFaultMs);
    } finally {
      loaded = await load.stop();
    }
    const loadStoppedAtMs = performance.now();
    const convergence = await awaitConvergence(cluster, convergeMsMax).then(
      (converged) => ({ converged }),
      (error: unknown) => ({ error }),
    );
    const moved = await sampler.stop(figuresBefore);
    const converged = 'converged' in convergence
      ? `converged ${seconds(convergence.converged.atMs - outcome.endedAtMs)} after the fault ended, ${seconds(convergence.converged.atMs - loadStoppedAtMs)} after the load stopped (when the fault ended: ${gapAtFaultEnd ?? 'converged'}; when the load stopped: ${convergence.converged.firstGap ?? 'converged'})`
      : 'NOT converged';
    console.log(`faults ${scenario}: ${outcome.note}; ${describeLoad(loaded)}; ${converged}; moved (sums over nodes, after minus before): ${describeMoved(moved)}`);

    const problems = await checkEverything(cluster, loaded, outcome.hit);
    checkedBefore.push({ scenario, acknowledged: loaded.acknowledged, deleted: loaded.deleted });
    if (problems.length > 0) {
      const shown = await Promise.all(problems.slice(0, 10).map(async (problem) => `  ${problem.key} through ${problem.node}: expected ${problem.expected}, got ${problem.status} ${JSON.stringify(problem.body)}; replicas: ${await replicasOf(running.slots, problem.key)}`));
      assert.fail(`${scenario}: ${problems.length} reads wrong after the fault:\n${shown.join('\n')}`);
    }
    if ('error' in convergence) {
      const candidates = [...new Set(checkedBefore.map((checked) => checked.scenario))].flatMap((name) => Array.from({ length: loadShape.requestsMax }, (_unused, index) => `load-${name}-${index}`));
      console.log(`faults ${scenario}: not converged; where:\n${await explainDivergence(running.slots, candidates).catch((error: unknown) => String(error))}`);
      throw convergence.error;
    }
    assert.ok(loaded.acknowledged.length > 0, 'the load had writes acknowledged');
  }

  /**
   * This scenario's keys through every live node; earlier scenarios' keys through one live node
   * each (in turn) and through the node the fault hit.
   */
  async function checkEverything(running: FaultCluster, loaded: LoadResult, hit: NodeSlot | undefined): Promise<ReadProblem[]> {
    const startMs = performance.now();
    const live = running.live();
    const current = await checkReads(live, { present: loaded.acknowledged, absent: loaded.deleted });
    const earlierPresent = checkedBefore.flatMap((checked) => checked.acknowledged);
    const earlierAbsent = checkedBefore.flatMap((checked) => checked.deleted);
    const earlier = await Promise.all(
      live.map((node, index) =>
        checkReads([node], {
          present: node === hit?.process ? earlierPresent : earlierPresent.filter((_key, keyIndex) => keyIndex % live.length === index),
          absent: node === hit?.process ? earlierAbsent : earlierAbsent.filter((_key, keyIndex) => keyIndex % live.length === index),
        }, 4),
      ),
    );
    const transient = [...current.transient, ...earlier.flatMap((result) => result.transient)];
    const reads = current.reads + earlier.reduce((sum, result) => sum + result.reads, 0);
    console.log(`  reads after: ${reads} in ${seconds(performance.now() - startMs)} (${loaded.acknowledged.length} + ${loaded.deleted.length} keys through ${live.length} nodes, ${earlierPresent.length} + ${earlierAbsent.length} earlier keys)${transient.length > 0 ? `; ${transient.length} wrong at first, right on a second read (first: ${transient[0]!.key} ${transient[0]!.status})` : ''}`);
    return [...current.problems, ...earlier.flatMap((result) => result.problems)];
  }

  test('faults: kill -9 one node of five for 30 s under load (W=2)', { timeout: scenarioTimeoutMs }, () =>
    runScenario('kill', async (running) => {
      const victim = running.slot('node-2');
      await running.kill(victim);
      await sleep(30_000);
      const restartMs = performance.now();
      await running.restart(victim);
      return { endedAtMs: performance.now(), note: `node-2 killed for 30 s, restarted (same data dir and ports) in ${seconds(performance.now() - restartMs)}`, hit: victim };
    }));

  test('faults: SIGSTOP one node of five for 20 s, then SIGCONT, under load (W=2)', { timeout: scenarioTimeoutMs }, () =>
    runScenario('pause', async (running) => {
      const victim = running.slot('node-3');
      running.pause(victim);
      await sleep(20_000);
      running.resume(victim);
      return { endedAtMs: performance.now(), note: 'node-3 stopped (SIGSTOP) for 20 s, continued', hit: victim };
    }));

  test('faults: partition one node from the other four (both ways) for 20 s under load (W=2)', { timeout: scenarioTimeoutMs, skip: loopbackFirewall.usable ? false : loopbackFirewall.reason }, () =>
    runScenario('partition', async (running) => {
      const victim = running.slot('node-4');
      const others = running.liveSlots().filter((slot) => slot !== victim);
      const cut = await partition(victim.host, others.map((slot) => slot.host));
      let seenDownMs: number | undefined;
      const cutMs = performance.now();
      try {
        // The cut is real when the majority's failure detector marks the node down.
        while (performance.now() - cutMs < 20_000) {
          if (seenDownMs === undefined) {
            const view = await statusOf(others[0]!.process!).catch(() => undefined);
            if (view?.members.find((member) => member.nodeId === victim.nodeId)?.state === 'down') seenDownMs = performance.now() - cutMs;
          }
          await sleep(250);
        }
      } finally {
        await cut.heal();
      }
      assert.ok(seenDownMs !== undefined, `${others[0]!.nodeId} never saw node-4 down during the partition`);
      return { endedAtMs: performance.now(), note: `node-4 (${victim.host}) cut off from ${others.length} nodes for 20 s (seen down after ${seconds(seenDownMs)}), healed`, hit: victim };
    }));

  test('faults: a 6th node joins the cluster under load (W=2)', { timeout: scenarioTimeoutMs }, () =>
    runScenario('join', async (running) => {
      const startMs = performance.now();
      const joined = await running.join();
      return { endedAtMs: performance.now(), note: `${joined.nodeId} (${joined.host}) joined, ready in ${seconds(performance.now() - startMs)}`, hit: joined };
    }));

  test('faults: a node leaves the cluster under load, hands off and exits 0 (W=2)', { timeout: scenarioTimeoutMs }, () =>
    runScenario('leave', async (running) => {
      const leaver = running.slot('node-5');
      const { code, leftAfterMs } = await running.leave(leaver, 90_000);
      assert.equal(code, 0, 'the leaving node exits 0 once it handed everything off');
      return { endedAtMs: performance.now(), note: `node-5 left: handed off and exited 0 ${seconds(leftAfterMs)} after POST /admin/leave` };
    }));

  test('faults: wipe one node\'s data directory (kill -9, rm -rf, restart with the same id and ports) under load (W=2)', { timeout: scenarioTimeoutMs }, () =>
    runScenario('wipe', async (running) => {
      const victim = running.slot('node-2');
      await running.wipe(victim);
      const restartMs = performance.now();
      await running.restart(victim, { join: true });
      return { endedAtMs: performance.now(), note: `node-2 killed, data dir removed, restarted empty in ${seconds(performance.now() - restartMs)}`, hit: victim };
    }));
});
