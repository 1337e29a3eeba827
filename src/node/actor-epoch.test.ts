import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createMemoryFileSystem } from '../world/memory-file-system.js';
import { actorOf, beginEpoch, endEpochCleanly } from './actor-epoch.js';

describe('node: actor epochs', () => {
  const lsm = { engineKeepsData: true, engineHasData: true };

  it('node: a fresh node writes as its id; a clean stop keeps the epoch; an unclean one starts the next', async () => {
    const fs = createMemoryFileSystem();
    await fs.mkdir('/d');
    await fs.syncDirectory('/');
    const first = await beginEpoch(fs, '/d', 'n1', { engineKeepsData: true, engineHasData: false });
    assert.deepEqual(first, { epoch: 0, actor: 'n1' });
    await endEpochCleanly(fs, '/d', first.epoch);
    assert.deepEqual(await beginEpoch(fs, '/d', 'n1', lsm), { epoch: 0, actor: 'n1' });
    // No clean end: the writes of that incarnation may be lost, so its dots must not be reused.
    assert.deepEqual(await beginEpoch(fs, '/d', 'n1', lsm), { epoch: 1, actor: 'n1~1' });
    fs.crash();
    assert.deepEqual(await beginEpoch(fs, '/d', 'n1', lsm), { epoch: 2, actor: 'n1~2' });
  });

  it('node: the epoch survives a crash right after it was decided (it is durable before the engine serves)', async () => {
    const fs = createMemoryFileSystem();
    await fs.mkdir('/d');
    await fs.syncDirectory('/');
    await beginEpoch(fs, '/d', 'n1', lsm);
    fs.crash();
    assert.equal((await beginEpoch(fs, '/d', 'n1', lsm)).epoch, 2);
  });

  it('node: a memory engine, which keeps nothing, starts a new epoch at every start but the first', async () => {
    const fs = createMemoryFileSystem();
    await fs.mkdir('/d');
    const memory = { engineKeepsData: false, engineHasData: false };
    assert.equal((await beginEpoch(fs, '/d', 'n1', memory)).epoch, 0);
    await endEpochCleanly(fs, '/d', 0);
    assert.equal((await beginEpoch(fs, '/d', 'n1', memory)).epoch, 1);
    assert.equal(actorOf('n1', 3), 'n1~3');
  });
});
