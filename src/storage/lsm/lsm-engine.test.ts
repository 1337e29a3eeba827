import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { SeededRandom } from '../../core/random.js';
import { SystemClock } from '../../world/clock.js';
import { NodeFileSystem } from '../../world/file-system.js';
import { createMemoryFileSystem } from '../../world/memory-file-system.js';
import { engineConformanceSuite } from '../engine-conformance.js';
import { LsmEngine, type LsmOptions } from './lsm-engine.js';

const clock = new SystemClock();

/** Options that make a handful of writes flush, compact and reach level 2 and deeper. */
const tinyOptions: Partial<LsmOptions> = {
  memtableSizeBytes: 2048,
  tableBytesTarget: 256,
  level0CompactionTrigger: 2,
  level0StopWritesTrigger: 6,
  level1BytesMax: 1024,
  levelSizeMultiplier: 2,
  blockBytes: 1024,
  compactionSliceEntries: 3,
};

let opened = 0;
function openOnMemory(options: Partial<LsmOptions> = {}): Promise<LsmEngine> {
  const fs = createMemoryFileSystem({ random: new SeededRandom(++opened) });
  return LsmEngine.open({ fs, clock }, '/data/lsm', options);
}

engineConformanceSuite('lsm', () => openOnMemory());
engineConformanceSuite('lsm, tiny memtable and levels', () => openOnMemory(tinyOptions), { keyCount: 'upper-bound' });

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
