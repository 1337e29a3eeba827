import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SeededRandom } from '../../core/random.js';
import { SystemClock } from '../../world/clock.js';
import { NodeFileSystem, type FileHandle, type FileSystem } from '../../world/file-system.js';
import { createMemoryFileSystem } from '../../world/memory-file-system.js';
import { tinyLsmOptions } from '../../../test/helpers/lsm-options.js';
import { engineConformanceSuite } from '../engine-conformance.js';
import { LsmEngine, type LsmOptions } from './lsm-engine.js';

const clock = new SystemClock();

const tinyOptions = tinyLsmOptions;

let opened = 0;
function openOnMemory(options: Partial<LsmOptions> = {}): Promise<LsmEngine> {
  const fs = createMemoryFileSystem({ random: new SeededRandom(++opened) });
  return LsmEngine.open({ fs, clock }, '/data/lsm', options);
}

engineConformanceSuite('lsm', () => openOnMemory());
engineConformanceSuite('lsm, tiny memtable and levels', () => openOnMemory(tinyOptions), { keyCount: 'upper-bound' });
// Cold point reads default to synchronous block reads (SyncReadGate); this runs the thread-pool path.
engineConformanceSuite('lsm, tiny memtable and levels, block reads in the thread pool', () => openOnMemory({ ...tinyOptions, syncReads: false }), { keyCount: 'upper-bound' });

const scratch = await mkdtemp(join(tmpdir(), 'ringkv-lsm-'));
after(() => rm(scratch, { recursive: true, force: true }));
let diskEngines = 0;
engineConformanceSuite(
  'lsm on disk, tiny memtable',
  () => LsmEngine.open({ fs: new NodeFileSystem(), clock }, join(scratch, `engine-${++diskEngines}`), { ...tinyOptions, syncPolicy: 'none' }),
  { keyCount: 'upper-bound' },
);

describe('lsm engine', () => {
  it('reopens with every write, from the log and from tables, after flushes and compactions', async () => {
    const fs = createMemoryFileSystem({ random: new SeededRandom(7) });
    const engine = await LsmEngine.open({ fs, clock }, '/d', tinyOptions);
    const expected = new Map<string, string>();
    for (let index = 0; index < 400; index++) {
      const key = `key-${(index * 7919) % 250}`;
      if (index % 9 === 0) {
        await engine.delete(Buffer.from(key));
        expected.delete(key);
      } else {
        await engine.put(Buffer.from(key), Buffer.from(`value-${index}`));
        expected.set(key, `value-${index}`);
      }
    }
    await engine.settle();
    const details = engine.details();
    assert.ok(details.levels.slice(1).some((level) => level.tables > 0), `compaction must have reached level 1: ${JSON.stringify(details.levels)}`);
    await engine.close();

    const reopened = await LsmEngine.open({ fs, clock }, '/d', tinyOptions);
    try {
      for (let index = 0; index < 250; index++) {
        const key = `key-${index}`;
        const value = await reopened.get(Buffer.from(key));
        assert.equal(value === undefined ? undefined : Buffer.from(value).toString(), expected.get(key), key);
      }
      const scanned: string[] = [];
      for await (const entry of reopened.scan()) scanned.push(Buffer.from(entry.key).toString());
      assert.deepEqual(scanned, [...expected.keys()].sort());
    } finally {
      await reopened.close();
    }
  });
});

describe('lsm engine: range deletions', () => {
  const key = (index: number): Buffer => Buffer.from(`k-${String(index).padStart(5, '0')}`);

  it('a range deletion drops whole tables inside it at once, keeps straddling tables correct, and survives a reopen', async () => {
    const fs = createMemoryFileSystem({ random: new SeededRandom(11) });
    const options: Partial<LsmOptions> = { ...tinyOptions, memtableSizeBytes: 16 * 1024, tableBytesTarget: 2048, level1BytesMax: 64 * 1024 };
    const engine = await LsmEngine.open({ fs, clock }, '/d', options);
    for (let index = 0; index < 2000; index++) await engine.put(key(index), Buffer.alloc(40, index % 251));
    await engine.flush();
    const before = engine.details();
    const tablesBefore = before.levels.reduce((sum, level) => sum + level.tables, 0);
    assert.ok(tablesBefore >= 10, `the data spans many tables: ${JSON.stringify(before.levels)}`);

    await engine.deleteRange({ gte: key(100), lt: key(1900) });
    await engine.settle();
    const after = engine.details();
    const tablesAfter = after.levels.reduce((sum, level) => sum + level.tables, 0);
    assert.ok(tablesAfter <= tablesBefore / 3, `tables inside the range are dropped without a rewrite: ${tablesBefore} -> ${tablesAfter}`);
    assert.equal(after.bytesCompacted, before.bytesCompacted, 'dropping tables compacts nothing');

    const check = async (target: LsmEngine): Promise<void> => {
      for (const index of [0, 99, 100, 101, 1000, 1899, 1900, 1999]) {
        const present = index < 100 || index >= 1900;
        assert.equal((await target.get(key(index))) !== undefined, present, `key ${index}`);
      }
      let count = 0;
      for await (const entry of target.scan()) {
        const index = Number(Buffer.from(entry.key).toString().slice(2));
        assert.ok(index < 100 || index >= 1900, `scan returned deleted key ${index}`);
        count += 1;
      }
      assert.equal(count, 200);
    };
    await check(engine);
    await engine.close();
    const reopened = await LsmEngine.open({ fs, clock }, '/d', options);
    try {
      await check(reopened);
      // Writes after the deletion are visible again in the deleted range.
      await reopened.put(key(500), Buffer.from('back'));
      assert.equal(Buffer.from((await reopened.get(key(500)))!).toString(), 'back');
    } finally {
      await reopened.close();
    }
  });

  it('a range deletion only in the commit log (not flushed) is replayed on open', async () => {
    const fs = createMemoryFileSystem({ random: new SeededRandom(12) });
    const engine = await LsmEngine.open({ fs, clock }, '/d', tinyOptions);
    for (let index = 0; index < 300; index++) await engine.put(key(index), Buffer.from('v'));
    await engine.flush();
    await engine.deleteRange({ gte: key(50) });
    await engine.close();
    const reopened = await LsmEngine.open({ fs, clock }, '/d', tinyOptions);
    try {
      assert.equal(await reopened.get(key(60)), undefined);
      assert.ok((await reopened.get(key(49))) !== undefined);
      let count = 0;
      for await (const _entry of reopened.scan()) count += 1;
      assert.equal(count, 50);
    } finally {
      await reopened.close();
    }
  });
});

/**
 * Time for the engine under test: real time at 1/100 of its pace (so that a real hiccup of a
 * busy machine, a GC pause or a preemption, never looks like a slow disk read), plus the time the
 * test adds: a synchronous read that "took" a millisecond.
 */
class SlowedClock extends SystemClock {
  addedMs = 0;
  override nowMs(): number {
    return super.nowMs() / 100 + this.addedMs;
  }
}

let syncReads = 0;

/** A file system whose synchronous reads take `readMs` of `clock`'s time each, as a disk (not the page cache) would. */
function slowSyncReads(fs: FileSystem, clock: SlowedClock, readMs: () => number): FileSystem {
  return new Proxy(fs, {
    get(target, property, receiver) {
      if (property !== 'open') return Reflect.get(target, property, receiver) as unknown;
      return async (path: string, options: { create: boolean }): Promise<FileHandle> => {
        const handle = await target.open(path, options);
        return new Proxy(handle, {
          get(inner, name, innerReceiver) {
            if (name !== 'readSync') return Reflect.get(inner, name, innerReceiver) as unknown;
            return (position: number, into: Uint8Array): number => {
              syncReads++;
              clock.addedMs += readMs();
              return inner.readSync!(position, into);
            };
          },
        });
      };
    },
  });
}

describe('lsm engine: cold reads', () => {
  const coldKey = (index: number): Buffer => Buffer.from(`k-${String(index).padStart(5, '0')}`);
  it('cold gets read blocks synchronously while reads are fast, and go to the thread pool while they are slow; every value right', async () => {
    const slowed = new SlowedClock();
    let readMs = 0.001;
    const fs = slowSyncReads(createMemoryFileSystem({ random: new SeededRandom(21) }), slowed, () => readMs);
    const options = { ...tinyOptions, blockCacheBytes: 4096 };
    const engine = await LsmEngine.open({ fs, clock: slowed }, '/d', options);
    for (let index = 0; index < 600; index++) await engine.put(coldKey(index), Buffer.from(`value-${index}`));
    await engine.settle();
    await engine.close();
    const reopened = await LsmEngine.open({ fs, clock: slowed }, '/d', options);
    try {
      let synchronous = 0;
      for (let index = 0; index < 600; index += 3) {
        const got = reopened.get(coldKey(index));
        if (!(got instanceof Promise)) synchronous++;
        assert.equal(Buffer.from((await got)!).toString(), `value-${index}`);
      }
      assert.equal(synchronous, 200, 'with fast reads every cold get answers without a Promise');
      assert.equal(reopened.details().cache.syncReadsToPool, 0);

      readMs = 1; // the data fell out of the page cache
      const missesBefore = reopened.details().cache.misses;
      const syncReadsBefore = syncReads;
      for (let index = 1; index < 600; index += 3) assert.equal(Buffer.from((await reopened.get(coldKey(index)))!).toString(), `value-${index}`);
      const { cache } = reopened.details();
      assert.equal(cache.syncReadsToPool, 1, 'three slow reads sent the reads to the thread pool');
      assert.ok(cache.slowSyncReads >= 3, `${cache.slowSyncReads} slow reads`);
      const readSynchronously = syncReads - syncReadsBefore;
      assert.ok(readSynchronously >= 1 && readSynchronously <= 3, `no synchronous read after the third slow one: ${readSynchronously}`);
      assert.ok(cache.misses - missesBefore > 20, `the other misses were read in the pool: ${cache.misses - missesBefore} misses`);
    } finally {
      await reopened.close();
    }
  });
});
