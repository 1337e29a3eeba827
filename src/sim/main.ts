import { Command, InvalidArgumentError, Option } from 'commander';
import { bugNames, markNames, type BugName, type MarkName } from '../core/simulation-hooks.js';
import { defaultSimulationOptions, historyText, runSimulation, type SimulationOptions, type SimulationResult } from './simulation.js';

/**
 * `npm run sim`: one seed replayed exactly (`--seed 42`), or a sweep (`--seeds 1000`, or
 * `--budget-s 180` for as many fresh seeds as fit). A failing seed prints the command that
 * replays it and the last events of its trace; a sweep ends with how many seeds passed, the
 * simulation speed and which rare-path marks the faults reached.
 */
function integer(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return value;
}

const program = new Command('ringkv-sim')
  .description('Deterministic simulation of a ringkv cluster: real nodes on virtual time, network and disk, with faults and checkers')
  .option('--seed <n>', 'run this one seed (replays exactly)', integer)
  .option('--seeds <count>', 'sweep this many seeds', integer)
  .option('--first-seed <n>', 'first seed of a sweep (default: a fresh one from the clock)', integer)
  .option('--budget-s <seconds>', 'sweep fresh seeds until this much wall time is used', integer)
  .option('--nodes <n>', 'nodes in the cluster', integer, defaultSimulationOptions.nodes)
  .option('--load-s <seconds>', 'simulated seconds of client load with faults', integer, defaultSimulationOptions.loadMs / 1000)
  .option('--clients <n>', 'virtual clients', integer, defaultSimulationOptions.clients)
  .option('--keys <n>', 'hot keys per namespace (400 cold keys besides)', integer, defaultSimulationOptions.keys)
  .option('--no-faults', 'no faults: a clean run')
  .option('--faulty-max <n>', 'nodes that may be down or cut off at once', integer, defaultSimulationOptions.faultyMax)
  .option('--no-anti-entropy', 'nodes run without active anti-entropy (read repair and handoff alone heal)')
  .option('--no-pauses', 'no pauses (SIGSTOP) of nodes: the fault schedule seeds had before pauses existed')
  .addOption(new Option('--bug <name...>', 'turn on a deliberate bug (to see a checker catch it)').choices([...bugNames]))
  .option('--history', 'print the history of a single seed (one JSON operation per line)')
  .option('--trace-lines <n>', 'trace lines printed for a failing seed', integer, 60);

function replayCommand(options: SimulationOptions): string {
  const defaults = defaultSimulationOptions;
  const flags = [`--seed ${options.seed}`];
  if (options.nodes !== defaults.nodes) flags.push(`--nodes ${options.nodes}`);
  if (options.loadMs !== defaults.loadMs) flags.push(`--load-s ${options.loadMs / 1000}`);
  if (options.clients !== defaults.clients) flags.push(`--clients ${options.clients}`);
  if (options.keys !== defaults.keys) flags.push(`--keys ${options.keys}`);
  if (!options.faults) flags.push('--no-faults');
  if (options.faultyMax !== defaults.faultyMax) flags.push(`--faulty-max ${options.faultyMax}`);
  if (!options.antiEntropy) flags.push('--no-anti-entropy');
  if (!options.pauses) flags.push('--no-pauses');
  if (options.bugs.length > 0) flags.push(`--bug ${options.bugs.join(' ')}`);
  return `npm run sim -- ${flags.join(' ')}`;
}

function summary(result: SimulationResult): string {
  const { stats } = result;
  const operations = stats.operations;
  const faults = Object.entries(stats.faults).map(([kind, count]) => `${kind} ${count}`).join(', ') || 'none';
  return (
    `seed ${result.seed}: ${result.violations.length === 0 ? 'PASS' : `FAIL (${result.violations.length} violations)`} · ` +
    `${(stats.simulatedMs / 1000).toFixed(0)} s simulated in ${(stats.wallMs / 1000).toFixed(1)} s (${stats.nodeSecondsPerSecond.toFixed(0)} node-s/s; under load ${stats.loadNodeSecondsPerSecond.toFixed(0)}) · ` +
    `ops ok ${operations.ok} fail ${operations.fail} timeout ${operations.timeout} · faults: ${faults} · history ${result.historyDigest.slice(0, 16)}`
  );
}

function printFailure(result: SimulationResult, traceLines: number): void {
  console.log(`\n  violations of seed ${result.seed}:`);
  for (const violation of result.violations.slice(0, 10)) console.log(`  - [${violation.checker}] ${violation.message}`);
  if (result.violations.length > 10) console.log(`  ... and ${result.violations.length - 10} more`);
  console.log(`\n  last ${traceLines} events:`);
  for (const line of traceLines === 0 ? [] : result.trace.slice(-traceLines)) console.log(`    ${line}`);
  console.log(`\n  replay: ${replayCommand(result.options)}\n`);
}

async function main(): Promise<number> {
  program.parse();
  const flags = program.opts<{
    seed?: number; seeds?: number; firstSeed?: number; budgetS?: number; nodes: number; loadS: number; clients: number; keys: number;
    faults: boolean; faultyMax: number; antiEntropy: boolean; pauses?: boolean; bug?: BugName[]; history?: boolean; traceLines: number;
  }>();
  const base: Omit<SimulationOptions, 'seed'> = {
    ...defaultSimulationOptions,
    nodes: flags.nodes,
    loadMs: flags.loadS * 1000,
    clients: flags.clients,
    keys: flags.keys,
    faults: flags.faults,
    faultyMax: flags.faultyMax,
    antiEntropy: flags.antiEntropy,
    pauses: flags.pauses !== false,
    bugs: flags.bug ?? [],
  };
  if (flags.seed !== undefined) {
    const result = await runSimulation({ ...base, seed: flags.seed });
    if (flags.history === true) console.log(historyText(result.history));
    console.log(summary(result));
    if (result.violations.length > 0) printFailure(result, flags.traceLines);
    return result.violations.length === 0 ? 0 : 1;
  }
  const firstSeed = flags.firstSeed ?? Date.now() % 1_000_000_000;
  const count = flags.seeds ?? (flags.budgetS !== undefined ? Number.MAX_SAFE_INTEGER : 10);
  const deadlineMs = flags.budgetS === undefined ? Infinity : performance.now() + flags.budgetS * 1000;
  const marks = new Map<MarkName, number>();
  let passed = 0;
  let ran = 0;
  let simulatedNodeSeconds = 0;
  let wallMs = 0;
  const failed: number[] = [];
  for (let seed = firstSeed; ran < count && performance.now() < deadlineMs; seed++) {
    const result = await runSimulation({ ...base, seed });
    ran += 1;
    simulatedNodeSeconds += (result.stats.simulatedMs / 1000) * base.nodes;
    wallMs += result.stats.wallMs;
    for (const [name, hits] of result.marks) marks.set(name, (marks.get(name) ?? 0) + hits);
    console.log(summary(result));
    if (result.violations.length === 0) passed += 1;
    else {
      failed.push(seed);
      printFailure(result, flags.traceLines);
    }
  }
  console.log(`\nsweep: ${passed} of ${ran} seeds passed (seeds ${firstSeed}..${firstSeed + ran - 1}); ${(simulatedNodeSeconds / 3600).toFixed(1)} simulated node-hours at ${(simulatedNodeSeconds / (wallMs / 1000)).toFixed(0)} node-s per wall second`);
  console.log('rare paths reached (mark: hits):');
  for (const name of markNames) console.log(`  ${marks.has(name) ? '✓' : '✗'} ${name}: ${marks.get(name) ?? 0}`);
  if (failed.length > 0) console.log(`failing seeds: ${failed.join(' ')}`);
  return failed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
