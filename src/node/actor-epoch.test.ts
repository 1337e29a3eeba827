import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SeededRandom } from '../core/random.js';
import { createMemoryFileSystem, type MemoryFileSystem } from '../world/memory-file-system.js';
import { beginEpoch, endEpochCleanly } from './actor-epoch.js';

async function disk(): Promise<MemoryFileSystem> {
  const fs = createMemoryFileSystem();
  await fs.mkdir('/d');
  await fs.syncDirectory('/');
  return fs;
}

describe('node: actor epochs', () => {
  const random = new SeededRandom(1);
  const lsm = { engineKeepsData: true, engineHasData: true, freshNode: false };

  it('node: a new node writes as its id; a clean stop keeps the actor; an unclean one (or a crash) gets a new one', async () => {
    const fs = await disk();
    const first = await beginEpoch(fs, '/d', 'n1', random, { engineKeepsData: true, engineHasData: false, freshNode: true });
    assert.deepEqual(first, { epoch: 0, actor: 'n1' });
    await endEpochCleanly(fs, '/d', first);
    assert.deepEqual(await beginEpoch(fs, '/d', 'n1', random, lsm), first);
    // No clean end: the writes of that incarnation may be lost, so its dots must not be reused.
    const second = await beginEpoch(fs, '/d', 'n1', random, lsm);
    assert.equal(second.epoch, 1);
    assert.match(second.actor, /^n1~[0-9a-z]{8}$/);
    fs.crash();
    const third = await beginEpoch(fs, '/d', 'n1', random, lsm);
    assert.equal(third.epoch, 2);
    assert.notEqual(third.actor, second.actor);
  });

  it('node: the actor is durable before the engine serves: a crash right after keeps it from being reused', async () => {
    const fs = await disk();
    const first = await beginEpoch(fs, '/d', 'n1', random, lsm);
    fs.crash();
    const next = await beginEpoch(fs, '/d', 'n1', random, lsm);
    assert.equal(next.epoch, first.epoch + 1);
    assert.notEqual(next.actor, first.actor);
  });

  it('node: a configured node id on an empty disk (perhaps a replaced one) never writes as the bare id', async () => {
    const fs = await disk();
    const epoch = await beginEpoch(fs, '/d', 'n1', random, { engineKeepsData: true, engineHasData: false, freshNode: false });
    assert.match(epoch.actor, /^n1~/);
  });

  it('node: a memory engine, which keeps nothing, gets a new actor at every start but the first', async () => {
    const fs = await disk();
    const memory = { engineKeepsData: false, engineHasData: false, freshNode: true };
    const first = await beginEpoch(fs, '/d', 'n1', random, memory);
    assert.equal(first.actor, 'n1');
    await endEpochCleanly(fs, '/d', first);
    assert.notEqual((await beginEpoch(fs, '/d', 'n1', random, memory)).actor, 'n1');
  });
});
