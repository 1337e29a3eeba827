import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ManualClock, settle } from '../../../test/helpers/manual-clock.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { SeededRandom } from '../../core/random.js';
import type { FileHandle, FileSystem } from '../../world/file-system.js';
import { createMemoryFileSystem, fileSystemError, type MemoryFileSystem } from '../../world/memory-file-system.js';
import type { BatchOperation } from '../engine.js';
import type { SyncPolicy } from './commit-log-writer.js';
import { tinyLsmOptions } from '../../../test/helpers/lsm-options.js';
import { backgroundRetryMs, LsmEngine, type LsmEvent, type LsmOptions } from './lsm-engine.js';
import { readManifest, tableFileName } from './manifest.js';

// Faults under the whole engine, on the simulated disk: crashes at every kind of moment (mid-write,
// mid-flush, mid-compaction, mid-recovery), flipped bits in every kind of file, and a full disk.
// The properties run with a fixed fast-check seed; RINGKV_FAULT_SEED=<n> tries another.

const dir = '/db/lsm';
const propertySeed = Number(process.env['RINGKV_FAULT_SEED'] ?? 0x5eed);

/** The shared tiny options, with log segments small enough to rotate within a run. */
const tinyOptions: Partial<LsmOptions> = { ...tinyLsmOptions, logSegmentBytesMax: 1024 };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function isCorruption(error: unknown): error is RingkvError {
  return error instanceof RingkvError && error.code === ErrorCode.corruption;
}

/** A fresh disk with the engine directory's parent in place and durable (the engine creates and syncs `dir` itself). */
async function newDisk(seed: number): Promise<MemoryFileSystem> {
  const disk = createMemoryFileSystem({ random: new SeededRandom(seed) });
  await disk.mkdir('/db');
  await disk.syncDirectory('/');
  return disk;
}

/**
 * The engine's view of a MemoryFileSystem, with faults. At its `crashAtOperation`th call (file
 * system or handle) the disk crashes and this view dies with it: that call and every later one
 * fail with EIO, as a killed process does nothing more (the engine object left behind must not
 * touch the disk the next engine recovers from). At its `failWritesAt.write`th handle write the
 * disk starts failing the next `failWritesAt.count` writes, and writes to files matching
 * `failWritesTo.pattern` fail until `failWritesTo.count` did (ENOSPC, through failNextWrites).
 */
class FaultyFileSystem implements FileSystem {
  operations = 0;
  writes = 0;
  dead = false;
  /** Failed writes injected by `failWritesTo` so far. */
  writesFailedByPattern = 0;
  /** Handles opened through this view and not closed yet, by path. */
  readonly openHandles = new Map<string, number>();
  /** The call the crash interrupted, e.g. "write /db/lsm/00000012.sst". */
  crashedDuring: string | undefined;
  private readonly crashed: Promise<void>;
  private markCrashed: () => void = () => undefined;

  constructor(
    readonly disk: MemoryFileSystem,
    private readonly faults: {
      readonly crashAtOperation?: number;
      readonly tearLastWrite?: boolean;
      readonly failWritesAt?: { readonly write: number; readonly count: number };
      /** Each write to a file matching `pattern` fails (ENOSPC) until `count` have failed. */
      readonly failWritesTo?: { readonly pattern: RegExp; readonly count: number };
      /** Called just before the disk crashes, with the interrupted call. */
      readonly onCrash?: (during: string) => void;
    } = {},
  ) {
    this.crashed = new Promise((resolve) => (this.markCrashed = resolve));
  }

  /** Resolves once the disk crashed under this view. */
  whenCrashed(): Promise<void> {
    return this.crashed;
  }

  crash(during: string): void {
    if (this.dead) return;
    this.faults.onCrash?.(during);
    this.disk.crash({ tearLastWrite: this.faults.tearLastWrite ?? false });
    this.dead = true;
    this.crashedDuring = during;
    this.markCrashed();
  }

  /** Runs one call unless the view is dead or this is the call the crash interrupts. */
  step<T>(operation: string, path: string, run: () => Promise<T>): Promise<T> {
    if (!this.dead && ++this.operations === this.faults.crashAtOperation) this.crash(`${operation} ${path}`);
    if (this.dead) return Promise.reject(fileSystemError('EIO', `${operation} (the process crashed)`, path));
    return run();
  }

  beforeWrite(path: string): void {
    const failure = this.faults.failWritesAt;
    if (failure !== undefined && ++this.writes === failure.write) this.disk.failNextWrites(failure.count);
    const targeted = this.faults.failWritesTo;
    if (targeted !== undefined && targeted.pattern.test(path) && this.writesFailedByPattern < targeted.count) {
      this.writesFailedByPattern += 1;
      this.disk.failNextWrites(1);
    }
  }

  open(path: string, options: { create: boolean }): Promise<FileHandle> {
    return this.step('open', path, async () => {
      const handle = new FaultyFileHandle(this, await this.disk.open(path, options), path);
      this.openHandles.set(path, (this.openHandles.get(path) ?? 0) + 1);
      return handle;
    });
  }

  readFile(path: string): Promise<Uint8Array> {
    return this.step('readFile', path, () => this.disk.readFile(path));
  }

  exists(path: string): Promise<boolean> {
    return this.step('exists', path, () => this.disk.exists(path));
  }

  mkdir(path: string): Promise<void> {
    return this.step('mkdir', path, () => this.disk.mkdir(path));
  }

  readdir(path: string): Promise<string[]> {
    return this.step('readdir', path, () => this.disk.readdir(path));
  }

  rename(from: string, to: string): Promise<void> {
    return this.step('rename', `${from} -> ${to}`, () => this.disk.rename(from, to));
  }

  unlink(path: string): Promise<void> {
    return this.step('unlink', path, () => this.disk.unlink(path));
  }

  syncDirectory(path: string): Promise<void> {
    return this.step('syncDirectory', path, () => this.disk.syncDirectory(path));
  }
}

class FaultyFileHandle implements FileHandle {
  constructor(
    private readonly fs: FaultyFileSystem,
    private readonly handle: FileHandle,
    private readonly path: string,
  ) {}

  read(position: number, length: number): Promise<Uint8Array> {
    return this.fs.step('read', this.path, () => this.handle.read(position, length));
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return this.fs.step('write', this.path, () => {
      this.fs.beforeWrite(this.path);
      return this.handle.write(data, position);
    });
  }

  sync(): Promise<void> {
    return this.fs.step('sync', this.path, () => this.handle.sync());
  }

  size(): Promise<number> {
    return this.fs.step('size', this.path, () => this.handle.size());
  }

  truncate(length: number): Promise<void> {
    return this.fs.step('truncate', this.path, () => this.handle.truncate(length));
  }

  close(): Promise<void> {
    return this.fs.step('close', this.path, async () => {
      await this.handle.close();
      const open = this.fs.openHandles.get(this.path)! - 1;
      if (open === 0) this.fs.openHandles.delete(this.path);
      else this.fs.openHandles.set(this.path, open);
    });
  }
}

/** Collects rejections nobody handled while `body` runs (the engine must handle all of its own). */
async function withoutUnhandledRejections(body: () => Promise<void>): Promise<void> {
  const unhandled: unknown[] = [];
  const listener = (reason: unknown): void => {
    unhandled.push(reason);
  };
  process.on('unhandledRejection', listener);
  try {
    await body();
    await settle();
  } finally {
    process.off('unhandledRejection', listener);
  }
  assert.deepEqual(unhandled.map(String), [], 'unhandled rejections');
}

async function readAll(engine: LsmEngine, keys: readonly string[]): Promise<Map<string, string | undefined>> {
  const values = new Map<string, string | undefined>();
  for (const key of keys) {
    const value = await engine.get(encoder.encode(key));
    values.set(key, value === undefined ? undefined : decoder.decode(value));
  }
  return values;
}

/** Every live entry of a full scan, checked against point reads of the same keys. */
async function assertScanMatches(engine: LsmEngine, values: ReadonlyMap<string, string | undefined>, context: string): Promise<void> {
  const scanned: [string, string][] = [];
  for await (const entry of engine.scan()) scanned.push([decoder.decode(entry.key), decoder.decode(entry.value)]);
  const expected = [...values].filter((pair): pair is [string, string] => pair[1] !== undefined).sort((left, right) => (left[0] < right[0] ? -1 : 1));
  assert.deepEqual(scanned, expected, `${context}: a full scan disagrees with point reads`);
}

// ---------------------------------------------------------------------------------------------
// (a) Crashes at random moments.

type StepKind = 'put' | 'delete' | 'batch' | 'flush' | 'tick';

interface Step {
  readonly kind: StepKind;
  /** Indexes into the writer's own keys; distinct. */
  readonly keys: readonly number[];
  readonly valueBytes: number;
}

interface Cycle {
  readonly writers: number;
  readonly steps: readonly Step[];
  /** Where the crash comes, as a fraction of the calls the steps make (estimated); past 1 it may come after the workload. */
  readonly crashAt: number;
  readonly tearLastWrite: boolean;
}

const writersMax = 8;
const keysPerWriter = 6;
const universe = Array.from({ length: writersMax * keysPerWriter }, (_unused, index) => `k${String(index).padStart(2, '0')}`);
/** File system calls per step, roughly (a write and its fsync, plus flushes and compactions). */
const operationsPerStep = 10;

const stepArbitrary: fc.Arbitrary<Step> = fc.record({
  kind: fc.oneof(
    { weight: 8, arbitrary: fc.constant<StepKind>('put') },
    { weight: 2, arbitrary: fc.constant<StepKind>('delete') },
    { weight: 3, arbitrary: fc.constant<StepKind>('batch') },
    { weight: 1, arbitrary: fc.constant<StepKind>('flush') },
    { weight: 1, arbitrary: fc.constant<StepKind>('tick') },
  ),
  keys: fc.uniqueArray(fc.nat(keysPerWriter - 1), { minLength: 1, maxLength: 3 }),
  valueBytes: fc.nat(300),
});

const cycleArbitrary: fc.Arbitrary<Cycle> = fc.record({
  writers: fc.integer({ min: 1, max: writersMax }),
  steps: fc.array(stepArbitrary, { minLength: 5, maxLength: 120, size: 'max' }),
  crashAt: fc.noBias(fc.integer({ min: 0, max: 1150 })).map((permille) => permille / 1000),
  tearLastWrite: fc.boolean(),
});

/** One write as issued: its operations by key, with each one's place in that key's history. */
interface IssuedWrite {
  readonly id: string;
  readonly operations: { readonly key: string; readonly value: string | undefined; readonly index: number }[];
  /** Writes acknowledged before this one was issued: they have lower sequence numbers. */
  readonly acknowledgedBefore: number;
  acknowledged: number | undefined;
}

/**
 * What the engine may show after a crash. Each key's writes are issued one at a time, so they
 * form a history: index 0 is the state read back after the previous crash (durable), then every
 * write issued since. A write must survive when it was acknowledged and the policy is `always`,
 * or when a flush() that started after its acknowledgement finished; any issued write may survive.
 */
class CrashOracle {
  private readonly histories = new Map<string, { value: string | undefined; write: IssuedWrite | undefined }[]>();
  private readonly acknowledged: IssuedWrite[] = [];
  private readonly issued: IssuedWrite[] = [];
  /** Writes acknowledged before the start of the latest flush() that finished. */
  private flushedAcknowledgements = 0;

  constructor(
    private readonly policy: SyncPolicy,
    baseline: ReadonlyMap<string, string | undefined>,
  ) {
    for (const key of universe) this.histories.set(key, [{ value: baseline.get(key), write: undefined }]);
  }

  issue(id: string, operations: readonly { key: string; value: string | undefined }[]): IssuedWrite {
    const write: IssuedWrite = { id, operations: [], acknowledgedBefore: this.acknowledged.length, acknowledged: undefined };
    for (const { key, value } of operations) {
      const history = this.histories.get(key)!;
      write.operations.push({ key, value, index: history.length });
      history.push({ value, write });
    }
    this.issued.push(write);
    return write;
  }

  acknowledge(write: IssuedWrite): void {
    write.acknowledged = this.acknowledged.length;
    this.acknowledged.push(write);
  }

  get acknowledgements(): number {
    return this.acknowledged.length;
  }

  flushed(acknowledgementsAtStart: number): void {
    this.flushedAcknowledgements = Math.max(this.flushedAcknowledgements, acknowledgementsAtStart);
  }

  private mustSurvive(write: IssuedWrite | undefined): boolean {
    if (write === undefined) return true;
    if (write.acknowledged === undefined) return false;
    return this.policy === 'always' || write.acknowledged < this.flushedAcknowledgements;
  }

  /** Checks what the reopened engine shows; throws with the first violation. */
  check(observed: ReadonlyMap<string, string | undefined>, context: string): void {
    // Per key, the places in its history that the value read back may stand for.
    const places = new Map<string, { lowest: number; highest: number }>();
    for (const key of universe) {
      const history = this.histories.get(key)!;
      const floor = history.findLastIndex((entry) => this.mustSurvive(entry.write));
      const value = observed.get(key);
      const matching = history.flatMap((entry, index) => (index >= floor && entry.value === value ? [index] : []));
      assert.ok(
        matching.length > 0,
        `${context}: ${key} reads ${show(value)}; history ${JSON.stringify(history.map((entry) => `${entry.write?.id ?? 'baseline'}${entry.write?.acknowledged === undefined ? '' : '(acked)'}=${show(entry.value)}`))}, must show at least entry ${floor}`,
      );
      places.set(key, { lowest: matching[0]!, highest: matching.at(-1)! });
    }
    for (const write of this.issued) {
      const certain = write.operations.filter((operation) => places.get(operation.key)!.lowest >= operation.index);
      if (certain.length === 0) continue;
      // A batch is one log record: all of it survived.
      for (const operation of write.operations) {
        assert.ok(places.get(operation.key)!.highest >= operation.index, `${context}: batch ${write.id} survived on ${certain[0]!.key} but not on ${operation.key}`);
      }
      // The log keeps a prefix: whatever was acknowledged before this write was issued survived too.
      for (const earlier of this.acknowledged.slice(0, write.acknowledgedBefore)) {
        for (const operation of earlier.operations) {
          assert.ok(
            places.get(operation.key)!.highest >= operation.index,
            `${context}: ${write.id} survived but ${earlier.id}, acknowledged before it was issued, is lost on ${operation.key}`,
          );
        }
      }
    }
  }
}

function show(value: string | undefined): string {
  return value === undefined ? 'absent' : value.split('|')[0]!;
}

/** Where crashes landed, over all runs of the property: each kind must be hit. */
const crashSites = { log: 0, flush: 0, compaction: 0, manifest: 0, recovery: 0, afterWorkload: 0, other: 0 };

function classifyCrash(during: string, engine: LsmEngine | undefined): keyof typeof crashSites {
  if (during === 'after the workload') return 'afterWorkload';
  if (engine === undefined) return 'recovery';
  if (/\/log-\d+\.log$/.test(during)) return 'log';
  if (/MANIFEST|CURRENT/.test(during)) return 'manifest';
  // A flush holds its frozen memtable until the flush is installed: none frozen means a compaction.
  if (/\.sst$/.test(during)) return engine.details().frozenMemtables > 0 ? 'flush' : 'compaction';
  return 'other';
}

/** Runs one cycle's writers against the engine until they finish or the disk crashes under them. */
async function runWorkload(engine: LsmEngine, view: FaultyFileSystem, clock: ManualClock, oracle: CrashOracle, cycle: Cycle, label: string): Promise<void> {
  const writers = Array.from({ length: cycle.writers }, async (_unused, writer) => {
    const steps = cycle.steps.filter((_step, index) => index % cycle.writers === writer);
    for (const [number, step] of steps.entries()) {
      if (view.dead) return;
      const keys = step.keys.map((local) => universe[writer + cycle.writers * local]!);
      const id = `${label}.${writer}.${number}`;
      try {
        // One writer moves the clock (for the periodic sync); ManualClock.advance is not reentrant.
        if (step.kind === 'tick') {
          if (writer === 0) await clock.advance(25);
        } else {
          await perform(engine, oracle, step, keys, id);
        }
      } catch (error) {
        // Once the disk is gone every call may fail; before that, none may.
        if (!view.dead) throw error;
        return;
      }
    }
  });
  const all = Promise.all(writers);
  await Promise.race([all, view.whenCrashed()]);
  // A write stalled behind a flush that can no longer happen ends only when the engine closes.
  if (view.dead) await engine.close().catch(() => undefined);
  await all;
}

async function perform(engine: LsmEngine, oracle: CrashOracle, step: Step, keys: readonly string[], id: string): Promise<void> {
  if (step.kind === 'flush') {
    const acknowledgements = oracle.acknowledgements;
    await engine.flush();
    return oracle.flushed(acknowledgements);
  }
  const chosen = step.kind === 'batch' ? keys : keys.slice(0, 1);
  const operations = chosen.map((key, index) => {
    const isDelete = step.kind === 'delete' || (step.kind === 'batch' && (step.valueBytes + index) % 4 === 0);
    return { key, value: isDelete ? undefined : `${id}|${key}|${'v'.repeat(step.valueBytes)}` };
  });
  const write = oracle.issue(id, operations);
  const only = operations[0]!;
  if (step.kind === 'batch') await engine.batch(operations.map(toBatchOperation));
  else if (only.value === undefined) await engine.delete(encoder.encode(only.key));
  else await engine.put(encoder.encode(only.key), encoder.encode(only.value));
  oracle.acknowledge(write);
}

function toBatchOperation({ key, value }: { key: string; value: string | undefined }): BatchOperation {
  return value === undefined ? { type: 'delete', key: encoder.encode(key) } : { type: 'put', key: encoder.encode(key), value: encoder.encode(value) };
}

describe('lsm faults: crashes on the simulated disk', () => {
  it('lsm crash property: crashes anywhere (torn last write, mid-flush, mid-compaction, mid-recovery), any sync policy: the engine reopens, keeps what it must, shows nothing never written, batches whole, the log a prefix', { timeout: 180_000 }, async () => {
    await withoutUnhandledRejections(async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom<SyncPolicy>('always', 'periodic', 'none'),
          fc.array(cycleArbitrary, { minLength: 1, maxLength: 3 }),
          fc.integer(),
          async (policy, cycles, diskSeed) => {
            const disk = await newDisk(diskSeed);
            const options: Partial<LsmOptions> = { ...tinyOptions, syncPolicy: policy, syncIntervalMs: 20 };
            let baseline = new Map<string, string | undefined>();
            for (const [number, cycle] of cycles.entries()) {
              const context = `policy ${policy}, cycle ${number}`;
              let engine: LsmEngine | undefined;
              const view = new FaultyFileSystem(disk, {
                crashAtOperation: 1 + Math.floor(cycle.crashAt * cycle.steps.length * operationsPerStep),
                tearLastWrite: cycle.tearLastWrite,
                onCrash: (during) => (crashSites[classifyCrash(during, engine)] += 1),
              });
              const clock = new ManualClock();
              const oracle = new CrashOracle(policy, baseline);
              try {
                engine = await LsmEngine.open({ fs: view, clock }, dir, options);
              } catch (error) {
                if (!view.dead) throw error;
              }
              if (engine !== undefined) {
                await runWorkload(engine, view, clock, oracle, cycle, `c${number}`);
                if (!view.dead) view.crash('after the workload');
                await engine.close().catch(() => undefined);
              }
              const reopened = await LsmEngine.open({ fs: disk, clock: new ManualClock() }, dir, options);
              try {
                const observed = await readAll(reopened, universe);
                oracle.check(observed, `${context}, crashed during ${view.crashedDuring}`);
                await assertScanMatches(reopened, observed, context);
                baseline = observed;
              } finally {
                await reopened.close();
              }
            }
          },
        ),
        { seed: propertySeed, numRuns: 1000 },
      );
    });
    console.log(`lsm crash property: crashes by site ${JSON.stringify(crashSites)}`);
    for (const site of ['log', 'flush', 'compaction', 'manifest', 'recovery'] as const) {
      assert.ok(crashSites[site] > 0, `no crash landed in ${site}: ${JSON.stringify(crashSites)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (b) Flipped bits in every kind of file.

/** A copy of `source` with every file durable, so each trial starts from the same disk. */
async function cloneDisk(source: MemoryFileSystem): Promise<MemoryFileSystem> {
  const copy = await newDisk(1);
  await copy.mkdir(dir);
  await copy.syncDirectory('/db');
  for (const path of source.listFiles()) {
    const handle = await copy.open(path, { create: true });
    await handle.write(await source.readFile(path), 0);
    await handle.sync();
    await handle.close();
  }
  await copy.syncDirectory(dir);
  return copy;
}

type FileKind = 'sst' | 'log' | 'manifest' | 'current';

function kindOf(path: string): FileKind | undefined {
  if (/\/\d+\.sst$/.test(path)) return 'sst';
  if (/\/log-\d+\.log$/.test(path)) return 'log';
  if (/\/MANIFEST-\d+$/.test(path)) return 'manifest';
  if (/\/CURRENT$/.test(path)) return 'current';
  return undefined;
}

/** Offsets of the records of a log segment (docs/format/commit-log.md: u32le payload length, u32 checksum, payload). */
function recordOffsets(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const offsets: number[] = [];
  for (let offset = 0; offset + 8 <= bytes.length; offset += 8 + view.getUint32(offset, true)) offsets.push(offset);
  return offsets;
}

interface FlipTarget {
  readonly path: string;
  readonly kind: FileKind;
  /** Flips go to [0, bytes): for the last log segment, everything before its last record. */
  readonly bytes: number;
}

interface FlipStore {
  readonly disk: MemoryFileSystem;
  readonly expected: ReadonlyMap<string, string | undefined>;
  readonly targets: readonly FlipTarget[];
  /** The last log record (the torn-tail rule's exception) and the value its key had before it. */
  readonly lastRecord: { readonly path: string; readonly start: number; readonly end: number; readonly key: string; readonly previous: string | undefined };
}

const flipKeys = Array.from({ length: 60 }, (_unused, index) => `key-${String(index).padStart(2, '0')}`);
const flipOptions: Partial<LsmOptions> = { ...tinyOptions, memtableSizeBytes: 4096, logSegmentBytesMax: 1024, syncPolicy: 'always' };

/** Tables on several levels plus an unflushed log tail over several segments; every file durable. */
async function buildFlipStore(): Promise<FlipStore> {
  const disk = await newDisk(7);
  const engine = await LsmEngine.open({ fs: disk, clock: new ManualClock() }, dir, flipOptions);
  const expected = new Map<string, string | undefined>();
  const write = async (index: number, bytes: number): Promise<void> => {
    const key = flipKeys[(index * 7) % flipKeys.length]!;
    const keyBytes = encoder.encode(key);
    if (index % 11 === 5) {
      await engine.delete(keyBytes);
      expected.set(key, undefined);
    } else if (index % 13 === 7) {
      const other = flipKeys[(index * 7 + 1) % flipKeys.length]!;
      const values = [`${index}|${key}|${'b'.repeat(bytes)}`, `${index}|${other}|${'c'.repeat(bytes)}`];
      await engine.batch([
        { type: 'put', key: keyBytes, value: encoder.encode(values[0]!) },
        { type: 'put', key: encoder.encode(other), value: encoder.encode(values[1]!) },
      ]);
      expected.set(key, values[0]);
      expected.set(other, values[1]);
    } else {
      const value = `${index}|${key}|${'a'.repeat(bytes)}`;
      await engine.put(keyBytes, encoder.encode(value));
      expected.set(key, value);
    }
  };
  for (let index = 0; index < 240; index++) await write(index, 10 + ((index * 37) % 90));
  await engine.settle();
  // A tail that stays in the log (under memtableSizeBytes), over several 1 KiB segments.
  for (let index = 240; index < 264; index++) await write(index, 60);
  const lastKey = 'last-key';
  await engine.put(encoder.encode(lastKey), encoder.encode('previous'));
  await engine.put(encoder.encode(lastKey), encoder.encode('newest'));
  expected.set(lastKey, 'newest');
  const levels = engine.details().levels.map((level) => level.tables);
  await engine.close();

  const targets: FlipTarget[] = [];
  const paths = disk.listFiles();
  const lastSegment = paths.filter((path) => kindOf(path) === 'log').at(-1)!;
  const lastBytes = await disk.readFile(lastSegment);
  const lastStart = recordOffsets(lastBytes).at(-1)!;
  for (const path of paths) {
    const kind = kindOf(path);
    assert.ok(kind !== undefined, `unexpected file ${path}`);
    const bytes = path === lastSegment ? lastStart : (await disk.readFile(path)).length;
    if (bytes > 0) targets.push({ path, kind, bytes });
  }
  const count = (kind: FileKind): number => targets.filter((target) => target.kind === kind).length;
  assert.ok(count('sst') >= 3 && count('log') >= 2 && count('manifest') === 1 && count('current') === 1, `store files: ${paths.join(', ')}`);
  assert.ok(levels[0]! + levels[1]! > 0 && levels.slice(2).some((tables) => tables > 0), `tables on several levels: ${JSON.stringify(levels)}`);
  return { disk, expected, targets, lastRecord: { path: lastSegment, start: lastStart, end: lastBytes.length, key: lastKey, previous: 'previous' } };
}

/** A full scan's entries until it ends or fails. */
async function scanUntilError(engine: LsmEngine, reverse: boolean): Promise<{ entries: [string, string][]; error: unknown }> {
  const entries: [string, string][] = [];
  try {
    for await (const entry of engine.scan({ reverse })) entries.push([decoder.decode(entry.key), decoder.decode(entry.value)]);
    return { entries, error: undefined };
  } catch (error) {
    return { entries, error };
  }
}

describe('lsm faults: flipped bits', () => {
  const universeOfFlips = [...flipKeys, 'last-key'];

  it('lsm bit flips: a flipped bit in an SSTable, a log segment (before its last record), the MANIFEST or CURRENT fails open or the reads that touch it with CORRUPTION naming the file, never a wrong value', { timeout: 90_000 }, async () => {
    const store = await buildFlipStore();
    const detected = { open: { sst: 0, log: 0, manifest: 0, current: 0 }, read: 0, getsFailed: 0 };
    await withoutUnhandledRejections(async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom<FileKind>('sst', 'log', 'manifest', 'current'), fc.nat(), fc.nat(), fc.nat(7), async (kind, fileChoice, offsetChoice, bit) => {
          const candidates = store.targets.filter((target) => target.kind === kind);
          const target = candidates[fileChoice % candidates.length]!;
          const offset = offsetChoice % target.bytes;
          const context = `bit ${bit} of byte ${offset} of ${target.path}`;
          const disk = await cloneDisk(store.disk);
          disk.flipBit(target.path, offset, bit);
          let engine: LsmEngine;
          try {
            engine = await LsmEngine.open({ fs: disk, clock: new ManualClock() }, dir, flipOptions);
          } catch (error) {
            assert.ok(isCorruption(error), `${context}: open failed with ${String(error)}, not CORRUPTION`);
            assert.ok(error.message.includes(target.path), `${context}: the error does not name the file: ${error.message}`);
            detected.open[kind] += 1;
            return;
          }
          try {
            // Only an SSTable's data blocks are read after open (footer, index, filter and properties are checked by it).
            assert.equal(kind, 'sst', `${context}: open did not notice`);
            for (const key of universeOfFlips) {
              try {
                const value = await engine.get(encoder.encode(key));
                assert.equal(value === undefined ? undefined : decoder.decode(value), store.expected.get(key), `${context}: get ${key}`);
              } catch (error) {
                if (!isCorruption(error)) throw error;
                assert.ok(error.message.includes(target.path), `${context}: get ${key} fails without naming the file: ${error.message}`);
                detected.getsFailed += 1;
              }
            }
            // A full scan reads every data block of every table: it must run into the flipped one.
            for (const reverse of [false, true]) {
              const { entries, error } = await scanUntilError(engine, reverse);
              assert.ok(isCorruption(error), `${context}: a full ${reverse ? 'reverse ' : ''}scan ended with ${String(error)}, not CORRUPTION`);
              assert.ok(error.message.includes(target.path), `${context}: the scan error does not name the file: ${error.message}`);
              for (const [key, value] of entries) assert.equal(value, store.expected.get(key), `${context}: scan returned a wrong value for ${key}`);
            }
            detected.read += 1;
          } finally {
            await engine.close();
          }
        }),
        { seed: propertySeed, numRuns: 800 },
      );
    });
    console.log(`lsm bit flips: detected on open ${JSON.stringify(detected.open)}, by reads ${detected.read} (${detected.getsFailed} gets failed)`);
    assert.ok(detected.read > 0 && detected.open.sst > 0, `flips in data blocks and table metadata both tried: ${JSON.stringify(detected)}`);
  });

  it('lsm bit flips: a flipped bit in the last record of the last log segment is a torn tail (docs/format/commit-log.md): cut off, only that batch lost, everything else intact', { timeout: 10_000 }, async () => {
    const store = await buildFlipStore();
    const { path, start, end, key, previous } = store.lastRecord;
    for (const offset of [start, start + 4, start + 9, end - 1]) {
      const disk = await cloneDisk(store.disk);
      disk.flipBit(path, offset, 3);
      const events: LsmEvent[] = [];
      const engine = await LsmEngine.open({ fs: disk, clock: new ManualClock(), onEvent: (event) => events.push(event) }, dir, flipOptions);
      try {
        const recovered = events.find((event) => event.kind === 'recovered');
        assert.ok(recovered?.kind === 'recovered' && recovered.truncatedBytes === end - start, `offset ${offset}: the last record is cut: ${JSON.stringify(recovered)}`);
        const values = await readAll(engine, universeOfFlips);
        assert.equal(values.get(key), previous, `offset ${offset}: ${key} falls back to the batch before`);
        for (const other of flipKeys) assert.equal(values.get(other), store.expected.get(other), `offset ${offset}: ${other}`);
        await assertScanMatches(engine, values, `offset ${offset}`);
      } finally {
        await engine.close();
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// (c) A full disk.

function isDiskFull(error: unknown): error is RingkvError {
  return error instanceof RingkvError && error.message.includes('ENOSPC');
}

/** Writers that each put their own keys one at a time; refusals are collected, not thrown. */
async function writeConcurrently(
  engine: LsmEngine,
  clock: ManualClock,
  plan: { readonly writers: number; readonly writesPerWriter: number; readonly valueBytes: number; readonly label: string },
): Promise<{ acknowledged: Map<string, string>; refused: unknown[] }> {
  const acknowledged = new Map<string, string>();
  const refused: unknown[] = [];
  let running = plan.writers;
  const writers = Array.from({ length: plan.writers }, async (_unused, writer) => {
    for (let number = 0; number < plan.writesPerWriter; number++) {
      const key = `w${writer}-k${number % 7}`;
      const value = `${plan.label}.${writer}.${number}|${key}|${'x'.repeat(plan.valueBytes)}`;
      try {
        await engine.put(encoder.encode(key), encoder.encode(value));
        acknowledged.set(key, value);
      } catch (error) {
        refused.push(error);
      }
    }
    running -= 1;
  });
  // A failed flush retries on a timer: time has to pass for stalled writes to go on.
  while (running > 0) await clock.advance(1000);
  await Promise.all(writers);
  return { acknowledged, refused };
}

/** Frees the disk (drops failures still due), reopens, and checks the values and that writes work again. */
async function assertHolds(disk: MemoryFileSystem, options: Partial<LsmOptions>, expected: ReadonlyMap<string, string | undefined>, context: string): Promise<void> {
  disk.failNextWrites(0);
  const events: LsmEvent[] = [];
  const engine = await LsmEngine.open({ fs: disk, clock: new ManualClock(), onEvent: (event) => events.push(event) }, dir, options);
  try {
    const values = await readAll(engine, [...expected.keys()]);
    assert.deepEqual(values, expected, `${context}: after reopening`);
    await engine.put(encoder.encode('after-reopen'), encoder.encode('writable'));
    assert.equal(decoder.decode((await engine.get(encoder.encode('after-reopen')))!), 'writable', `${context}: writable after reopening`);
  } finally {
    await engine.close();
  }
  assert.deepEqual(events.filter((event) => event.kind === 'background-error' || event.kind === 'log-failed'), [], `${context}: errors after reopening`);
}

describe('lsm faults: disk full (ENOSPC)', () => {
  for (const policy of ['always', 'none'] as const) {
    it(`lsm disk full: a put whose log write fails is refused with a clear error, so are later ones and reads until reopen; acknowledged writes survive close and crash (sync ${policy})`, { timeout: 20_000 }, async () => {
      await withoutUnhandledRejections(async () => {
        for (const ending of ['close', 'crash'] as const) {
          if (ending === 'crash' && policy !== 'always') continue;
          const disk = await newDisk(11);
          const view = new FaultyFileSystem(disk);
          const events: LsmEvent[] = [];
          const options: Partial<LsmOptions> = { ...tinyOptions, syncPolicy: policy };
          const engine = await LsmEngine.open({ fs: view, clock: new ManualClock(), onEvent: (event) => events.push(event) }, dir, options);
          const expected = new Map<string, string | undefined>();
          for (let index = 0; index < 60; index++) {
            const key = `key-${index % 25}`;
            const value = `${index}|${key}|${'v'.repeat(index * 3)}`;
            await engine.put(encoder.encode(key), encoder.encode(value));
            expected.set(key, value);
          }
          disk.failNextWrites(1);
          const refused = await engine.put(encoder.encode('refused'), encoder.encode('never stored')).then(() => undefined, (error: unknown) => error);
          assert.ok(isDiskFull(refused), `the put is refused naming ENOSPC: ${String(refused)}`);
          assert.equal(refused.code, ErrorCode.unavailable);
          assert.ok(events.some((event) => event.kind === 'log-failed' && event.message.includes('ENOSPC')), `a log-failed event: ${JSON.stringify(events)}`);
          // The log never writes after a gap: later writes are refused too, even with room again.
          const later = await engine.batch([{ type: 'delete', key: encoder.encode('key-1') }]).then(() => undefined, (error: unknown) => error);
          assert.ok(isDiskFull(later), `a later write is refused as well: ${String(later)}`);
          expected.set('refused', undefined);
          // Fail-stop: the memtable may hold writes the log lost, so reads are refused until the engine is reopened.
          const read = await Promise.resolve()
            .then(() => engine.get(encoder.encode('key-0')))
            .then(() => undefined, (error: unknown) => error);
          assert.ok(isDiskFull(read), `reads are refused after the failure: ${String(read)}`);
          if (ending === 'crash') view.crash('test');
          await engine.close().catch((error: unknown) => assert.ok(ending === 'crash', `close after a disk-full failure: ${String(error)}`));
          await assertHolds(disk, options, expected, `${ending} after a refused put`);
        }
      });
    });
  }

  for (const target of [
    { name: 'table', pattern: /\.sst$/ },
    { name: 'manifest', pattern: /MANIFEST-\d+$|CURRENT\.tmp$/ },
  ]) {
    it(`lsm disk full: ${target.name} writes failing during flushes and compactions are reported and retried; no put fails, nothing acknowledged is lost`, { timeout: 20_000 }, async () => {
      await withoutUnhandledRejections(async () => {
        for (const ending of ['close', 'crash'] as const) {
          const disk = await newDisk(13);
          const view = new FaultyFileSystem(disk, { failWritesTo: { pattern: target.pattern, count: 6 } });
          const events: LsmEvent[] = [];
          const clock = new ManualClock();
          const options: Partial<LsmOptions> = { ...tinyOptions, syncPolicy: 'always' };
          const engine = await LsmEngine.open({ fs: view, clock, onEvent: (event) => events.push(event) }, dir, options);
          const { acknowledged, refused } = await writeConcurrently(engine, clock, { writers: 4, writesPerWriter: 60, valueBytes: 60, label: target.name });
          assert.deepEqual(refused.map(String), [], 'the log has room: no put fails');
          await engine.flush();
          assert.equal(view.writesFailedByPattern, 6, 'every injected failure was hit');
          const failures = events.filter((event) => event.kind === 'background-error');
          assert.ok(failures.length > 0 && failures.every((event) => event.kind === 'background-error' && event.message.includes('ENOSPC')), `reported: ${JSON.stringify(failures)}`);
          assert.ok(events.some((event) => event.kind === 'flushed') && events.some((event) => event.kind === 'compacted'), 'flushes and compactions went through after the failures');
          assert.deepEqual(await readAll(engine, [...acknowledged.keys()]), acknowledged);
          if (ending === 'crash') view.crash('test');
          await engine.close().catch((error: unknown) => assert.ok(ending === 'crash', `close: ${String(error)}`));
          await assertHolds(disk, options, acknowledged, `${ending} after failed ${target.name} writes`);
        }
      });
    });
  }

  it('lsm disk full property: ENOSPC at a random write (log, table or manifest) under concurrent puts: refusals are clear RingkvErrors, nothing acknowledged is lost, a refused put never appears', { timeout: 90_000 }, async () => {
    const hits = { refusedPuts: 0, backgroundErrors: 0 };
    await withoutUnhandledRejections(async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom<SyncPolicy>('always', 'none'),
          fc.integer({ min: 1, max: 400 }),
          fc.integer({ min: 1, max: 4 }),
          fc.integer({ min: 1, max: 6 }),
          fc.constantFrom('close', 'crash'),
          async (policy, failAtWrite, failCount, writers, ending) => {
            const disk = await newDisk(failAtWrite);
            const view = new FaultyFileSystem(disk, { failWritesAt: { write: failAtWrite, count: failCount } });
            const events: LsmEvent[] = [];
            const clock = new ManualClock();
            const options: Partial<LsmOptions> = { ...tinyOptions, syncPolicy: policy };
            const engine = await LsmEngine.open({ fs: view, clock, onEvent: (event) => events.push(event) }, dir, options);
            const { acknowledged, refused } = await writeConcurrently(engine, clock, { writers, writesPerWriter: 40, valueBytes: 40, label: 'p' });
            for (const error of refused) assert.ok(isDiskFull(error), `a refused put says why: ${String(error)}`);
            hits.refusedPuts += refused.length;
            hits.backgroundErrors += events.filter((event) => event.kind === 'background-error').length;
            // Each writer's keys end with its last acknowledged value: a refused put is never stored.
            const expected = new Map<string, string | undefined>();
            for (let writer = 0; writer < writers; writer++) for (let key = 0; key < 7; key++) expected.set(`w${writer}-k${key}`, acknowledged.get(`w${writer}-k${key}`));
            if (events.some((event) => event.kind === 'log-failed')) {
              // Fail-stop: once the log failed, reads are refused until the engine is reopened.
              const read = await readAll(engine, [...expected.keys()]).then(() => undefined, (error: unknown) => error);
              assert.ok(isDiskFull(read), `reads after a log failure are refused: ${String(read)}`);
            } else {
              assert.deepEqual(await readAll(engine, [...expected.keys()]), expected, 'before reopening');
            }
            // A crash loses what `none` did not sync; `always` loses nothing.
            if (ending === 'crash' && policy === 'always') view.crash('test');
            await engine.close().catch((error: unknown) => assert.ok(view.dead, `close: ${String(error)}`));
            await assertHolds(disk, options, expected, `policy ${policy}, ${ending}, ${failCount} writes failing from write ${failAtWrite}`);
          },
        ),
        { seed: propertySeed, numRuns: 300 },
      );
    });
    console.log(`lsm disk full property: ${hits.refusedPuts} puts refused, ${hits.backgroundErrors} background errors reported`);
    assert.ok(hits.refusedPuts > 0 && hits.backgroundErrors > 0, `failures hit both the log and the background work: ${JSON.stringify(hits)}`);
  });
});

/** Flushes, letting the background retry timer fire while the disk still fails (bounded). */
async function flushThroughRetries(engine: LsmEngine, clock: ManualClock): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await engine.flush();
      return;
    } catch {
      await clock.advance(backgroundRetryMs);
    }
  }
  throw new Error('flush did not succeed after 50 retries');
}

describe('lsm faults: background failures', () => {
  it('lsm disk full: a flush or compaction whose manifest commit fails deletes and closes the tables it wrote', { timeout: 10_000 }, async () => {
    const disk = await newDisk(17);
    const view = new FaultyFileSystem(disk, { failWritesTo: { pattern: /MANIFEST-\d+$/, count: 4 } });
    const clock = new ManualClock();
    const engine = await LsmEngine.open({ fs: view, clock }, dir, { ...tinyOptions, syncPolicy: 'always' });
    await writeConcurrently(engine, clock, { writers: 2, writesPerWriter: 40, valueBytes: 60, label: 'leak' });
    await flushThroughRetries(engine, clock);
    assert.equal(view.writesFailedByPattern, 4);
    const live = (await readManifest(disk, dir))!.files.map((file) => `${dir}/${tableFileName(file.id)}`).sort();
    assert.deepEqual(disk.listFiles().filter((path) => path.endsWith('.sst')), live, 'tables on disk that the manifest does not list');
    await engine.close();
    assert.deepEqual([...view.openHandles.keys()], [], 'handles left open after close');
  });

  it('lsm disk full: flush reports the disk error while background work waits for its retry, and succeeds once the disk recovers', { timeout: 10_000 }, async () => {
    const disk = await newDisk(23);
    const clock = new ManualClock();
    const engine = await LsmEngine.open({ fs: disk, clock }, dir, { syncPolicy: 'always' });
    try {
      await engine.put(encoder.encode('key'), encoder.encode('value'));
      disk.failNextWrites(2000);
      await assert.rejects(engine.flush(), /ENOSPC/);
      await assert.rejects(engine.flush(), /ENOSPC/, 'no busy retry: the error stands until the retry timer');
      disk.failNextWrites(0);
      await clock.advance(backgroundRetryMs);
      await engine.flush();
      assert.equal(engine.details().levels[0]?.tables, 1);
      assert.equal(decoder.decode((await engine.get(encoder.encode('key')))!), 'value');
    } finally {
      await engine.close();
    }
  });

  it('lsm crash: an engine opened in a directory whose parent does not exist yet keeps acknowledged writes through a crash', { timeout: 10_000 }, async () => {
    const disk = createMemoryFileSystem({ random: new SeededRandom(19) });
    const engine = await LsmEngine.open({ fs: disk, clock: new ManualClock() }, '/data/node-1/lsm', { syncPolicy: 'always' });
    await engine.put(encoder.encode('key'), encoder.encode('acknowledged'));
    disk.crash();
    await engine.close().catch(() => undefined);
    const reopened = await LsmEngine.open({ fs: disk, clock: new ManualClock() }, '/data/node-1/lsm', { syncPolicy: 'always' });
    try {
      const value = await reopened.get(encoder.encode('key'));
      assert.equal(value === undefined ? undefined : decoder.decode(value), 'acknowledged');
    } finally {
      await reopened.close();
    }
  });
});
