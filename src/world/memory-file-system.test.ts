import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SeededRandom } from '../core/random.js';
import { writeFileAtomic, type FileHandle } from './file-system.js';
import { createMemoryFileSystem, type MemoryFileSystem } from './memory-file-system.js';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);
const text = (value: string): Uint8Array => new TextEncoder().encode(value);

async function freshDisk(seed = 1): Promise<MemoryFileSystem> {
  const fs = createMemoryFileSystem({ random: new SeededRandom(seed) });
  await fs.mkdir('/d');
  await fs.syncDirectory('/');
  return fs;
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => (error as { code?: string }).code === code);
}

describe('memory file system: operations', () => {
  it('memory fs: reads, writes at positions, sizes and truncates like a file', async () => {
    const fs = await freshDisk();
    const handle = await fs.open('/d/f', { create: true });
    await handle.write(bytes(1, 2, 3), 0);
    await handle.write(bytes(9), 5);
    assert.deepEqual(await handle.read(0, 100), bytes(1, 2, 3, 0, 0, 9));
    assert.deepEqual(await handle.read(2, 2), bytes(3, 0));
    assert.equal(await handle.size(), 6);
    await handle.truncate(2);
    assert.deepEqual(await fs.readFile('/d/f'), bytes(1, 2));
    await handle.truncate(4);
    assert.deepEqual(await fs.readFile('/d/f'), bytes(1, 2, 0, 0));
    await handle.close();
    await rejectsWithCode(handle.read(0, 1), 'EBADF');
  });

  it('memory fs: directory operations and their errors carry node-style codes', async () => {
    const fs = await freshDisk();
    await rejectsWithCode(fs.open('/d/missing', { create: false }), 'ENOENT');
    await rejectsWithCode(fs.open('/nowhere/f', { create: true }), 'ENOENT');
    await rejectsWithCode(fs.readFile('/d/missing'), 'ENOENT');
    await rejectsWithCode(fs.unlink('/d/missing'), 'ENOENT');
    await rejectsWithCode(fs.rename('/d/missing', '/d/x'), 'ENOENT');
    await rejectsWithCode(fs.readdir('/nowhere'), 'ENOENT');
    await fs.mkdir('/d/a/b');
    assert.equal(await fs.exists('/d/a'), true);
    await (await fs.open('/d/a/b/f', { create: true })).close();
    await (await fs.open('/d/g', { create: true })).close();
    assert.deepEqual(await fs.readdir('/d'), ['a', 'g']);
    assert.deepEqual(await fs.readdir('/d/a/b/'), ['f']);
    await fs.rename('/d/g', '/d/a/h');
    assert.deepEqual(fs.listFiles(), ['/d/a/b/f', '/d/a/h']);
    await fs.unlink('/d/a/h');
    assert.equal(await fs.exists('/d/a/h'), false);
    await rejectsWithCode(fs.unlink('/d/a'), 'EISDIR');
  });

  it('memory fs: an unlinked file stays usable through a handle opened before', async () => {
    const fs = await freshDisk();
    const handle = await fs.open('/d/f', { create: true });
    await fs.unlink('/d/f');
    await handle.write(text('still here'), 0);
    assert.deepEqual(await handle.read(0, 100), text('still here'));
    assert.deepEqual(fs.listFiles(), []);
  });

  it('memory fs: writeFileAtomic leaves the new contents after a crash', async () => {
    const fs = await freshDisk();
    await writeFileAtomic(fs, '/d/state', text('one'));
    await writeFileAtomic(fs, '/d/state', text('two'));
    fs.crash();
    assert.deepEqual(await fs.readFile('/d/state'), text('two'));
    assert.deepEqual(fs.listFiles(), ['/d/state']);
  });
});

describe('memory file system: crashes', () => {
  it('memory fs crash: unsynced writes vanish, synced ones stay', async () => {
    const fs = await freshDisk();
    const handle = await fs.open('/d/f', { create: true });
    await fs.syncDirectory('/d');
    await handle.write(text('durable'), 0);
    await handle.sync();
    await handle.write(text('-lost'), 7);
    await handle.write(text('X'), 0);
    fs.crash();
    assert.deepEqual(await fs.readFile('/d/f'), text('durable'));
    await rejectsWithCode(handle.write(text('late'), 0), 'EBADF');
    await rejectsWithCode(handle.sync(), 'EBADF');
  });

  it('memory fs crash: a file whose directory was not synced disappears, contents synced or not', async () => {
    const fs = await freshDisk();
    const handle = await fs.open('/d/f', { create: true });
    await handle.write(text('synced'), 0);
    await handle.sync();
    fs.crash();
    assert.equal(await fs.exists('/d/f'), false);
  });

  it('memory fs crash: rename and unlink are undone unless the directory was synced', async () => {
    const fs = await freshDisk();
    await writeFileAtomic(fs, '/d/a', text('A'));
    await fs.rename('/d/a', '/d/b');
    fs.crash();
    assert.deepEqual(fs.listFiles(), ['/d/a']);
    await fs.rename('/d/a', '/d/b');
    await fs.syncDirectory('/d');
    await fs.unlink('/d/b');
    fs.crash();
    assert.deepEqual(fs.listFiles(), ['/d/b']);
    assert.deepEqual(await fs.readFile('/d/b'), text('A'));
  });

  it('memory fs crash: a directory made with mkdir survives only once its parent is synced', async () => {
    const fs = await freshDisk();
    await fs.mkdir('/d/sub');
    await writeFileAtomic(fs, '/d/sub/f', text('x'));
    fs.crash();
    assert.equal(await fs.exists('/d/sub'), false);
    assert.deepEqual(fs.listFiles(), []);
  });

  it('memory fs crash: tearLastWrite keeps earlier unsynced writes and a strict prefix of the last (seeds 1..50)', async () => {
    const prefixes = new Set<number>();
    for (let seed = 1; seed <= 50; seed++) {
      const fs = await freshDisk(seed);
      const handle = await fs.open('/d/f', { create: true });
      await fs.syncDirectory('/d');
      await handle.write(text('abc'), 0);
      await handle.sync();
      await handle.write(text('def'), 3);
      await handle.write(text('0123456789'), 6);
      fs.crash({ tearLastWrite: true });
      const after = new TextDecoder().decode(await fs.readFile('/d/f'));
      assert.match(after, /^abcdef\d{0,9}$/);
      assert.ok('abcdef0123456789'.startsWith(after));
      prefixes.add(after.length - 6);
    }
    assert.ok(prefixes.size > 3, `tears should vary with the seed, saw ${[...prefixes].join(',')}`);
  });

  it('memory fs crash: the same seed tears the same way', async () => {
    const run = async (): Promise<Uint8Array[]> => {
      const fs = await freshDisk(77);
      for (const name of ['a', 'b', 'c']) {
        const handle = await fs.open(`/d/${name}`, { create: true });
        await handle.write(new Uint8Array(100).fill(name.charCodeAt(0)), 0);
      }
      await fs.syncDirectory('/d');
      fs.crash({ tearLastWrite: true });
      return Promise.all(['a', 'b', 'c'].map((name) => fs.readFile(`/d/${name}`)));
    };
    assert.deepEqual(await run(), await run());
  });
});

describe('memory file system: faults', () => {
  it('memory fs flipBit: changes one bit of the durable contents, seen by reads', async () => {
    const fs = await freshDisk();
    await writeFileAtomic(fs, '/d/f', bytes(0, 0, 0));
    fs.flipBit('/d/f', 1, 3);
    assert.deepEqual(await fs.readFile('/d/f'), bytes(0, 8, 0));
    fs.crash();
    assert.deepEqual(await fs.readFile('/d/f'), bytes(0, 8, 0));
    assert.throws(() => fs.flipBit('/d/f', 3, 0), /outside/);
  });

  it('memory fs failNextWrites: the next writes fail with the code and write nothing, then writes work again', async () => {
    const fs = await freshDisk();
    const handle = await fs.open('/d/f', { create: true });
    fs.failNextWrites(2);
    await rejectsWithCode(handle.write(text('a'), 0), 'ENOSPC');
    await rejectsWithCode(handle.write(text('b'), 0), 'ENOSPC');
    assert.equal(await handle.size(), 0);
    await handle.write(text('c'), 0);
    fs.failNextWrites(1, 'EIO');
    await rejectsWithCode(handle.write(text('d'), 1), 'EIO');
    assert.deepEqual(await fs.readFile('/d/f'), text('c'));
  });
});

// ---- Property: random operations against a naive model (copies everywhere, no cleverness). ----

type Operation =
  | { readonly kind: 'open'; readonly name: string }
  | { readonly kind: 'write'; readonly handle: number; readonly position: number; readonly data: Uint8Array }
  | { readonly kind: 'truncate'; readonly handle: number; readonly length: number }
  | { readonly kind: 'sync'; readonly handle: number }
  | { readonly kind: 'syncDirectory' }
  | { readonly kind: 'rename'; readonly from: string; readonly to: string }
  | { readonly kind: 'unlink'; readonly name: string };

const names = ['a', 'b', 'c'];
const nameArbitrary = fc.constantFrom(...names);
const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant('open' as const), name: nameArbitrary }),
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), handle: fc.nat(5), position: fc.nat(40), data: fc.uint8Array({ minLength: 1, maxLength: 24 }) }) },
  fc.record({ kind: fc.constant('truncate' as const), handle: fc.nat(5), length: fc.nat(40) }),
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const), handle: fc.nat(5) }) },
  fc.record({ kind: fc.constant('syncDirectory' as const) }),
  fc.record({ kind: fc.constant('rename' as const), from: nameArbitrary, to: nameArbitrary }),
  fc.record({ kind: fc.constant('unlink' as const), name: nameArbitrary }),
);

class ModelFile {
  current: Uint8Array = new Uint8Array(0);
  durable: Uint8Array = new Uint8Array(0);
  /** Contents before the latest write, while that write is the latest unsynced change. */
  lastWrite: { readonly before: Uint8Array; readonly position: number; readonly data: Uint8Array } | undefined;
}

function writeInto(target: Uint8Array, data: Uint8Array, position: number): Uint8Array {
  const result = new Uint8Array(Math.max(target.length, position + data.length));
  result.set(target);
  result.set(data, position);
  return result;
}

class Model {
  entries = new Map<string, ModelFile>();
  durableEntries = new Map<string, ModelFile>();
  handles: { file: ModelFile; real: FileHandle }[] = [];

  async apply(fs: MemoryFileSystem, operation: Operation): Promise<void> {
    switch (operation.kind) {
      case 'open': {
        const file = this.entries.get(operation.name) ?? new ModelFile();
        this.entries.set(operation.name, file);
        this.handles.push({ file, real: await fs.open(`/d/${operation.name}`, { create: true }) });
        return;
      }
      case 'write': {
        const handle = this.handles[operation.handle];
        if (handle === undefined) return;
        handle.file.lastWrite = { before: handle.file.current, position: operation.position, data: operation.data };
        handle.file.current = writeInto(handle.file.current, operation.data, operation.position);
        return handle.real.write(operation.data, operation.position);
      }
      case 'truncate': {
        const handle = this.handles[operation.handle];
        if (handle === undefined) return;
        const resized = new Uint8Array(operation.length);
        resized.set(handle.file.current.subarray(0, operation.length));
        handle.file.current = resized;
        handle.file.lastWrite = undefined;
        return handle.real.truncate(operation.length);
      }
      case 'sync': {
        const handle = this.handles[operation.handle];
        if (handle === undefined) return;
        handle.file.durable = handle.file.current;
        handle.file.lastWrite = undefined;
        return handle.real.sync();
      }
      case 'syncDirectory':
        this.durableEntries = new Map(this.entries);
        return fs.syncDirectory('/d');
      case 'rename': {
        const file = this.entries.get(operation.from);
        if (file === undefined) return;
        this.entries.delete(operation.from);
        this.entries.set(operation.to, file);
        return fs.rename(`/d/${operation.from}`, `/d/${operation.to}`);
      }
      case 'unlink':
        if (!this.entries.delete(operation.name)) return;
        return fs.unlink(`/d/${operation.name}`);
    }
  }
}

/** Every way the torn file may look: its contents before the last write plus a strict prefix of it. */
function tornCandidates(file: ModelFile): Uint8Array[] {
  const last = file.lastWrite;
  if (last === undefined) return [];
  const candidates = [last.before];
  for (let prefix = 1; prefix < last.data.length; prefix++) candidates.push(writeInto(last.before, last.data.subarray(0, prefix), last.position));
  return candidates;
}

describe('memory file system: crash property', () => {
  it('memory fs property: after a crash every file equals what was synced, under the names the directory sync saw', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(operationArbitrary, { maxLength: 40 }), fc.boolean(), fc.integer(), async (operations, tear, seed) => {
        const fs = await freshDisk(seed);
        const model = new Model();
        for (const operation of operations) await model.apply(fs, operation);
        fs.crash({ tearLastWrite: tear });
        assert.deepEqual(fs.listFiles(), [...model.durableEntries.keys()].sort().map((name) => `/d/${name}`));
        let torn = 0;
        for (const [name, file] of model.durableEntries) {
          const actual = await fs.readFile(`/d/${name}`);
          if (Buffer.compare(actual, file.durable) === 0) continue;
          torn += 1;
          assert.ok(tear, `${name} differs from its synced contents without a tear`);
          assert.ok(tornCandidates(file).some((candidate) => Buffer.compare(candidate, actual) === 0), `${name} is not a torn last write`);
        }
        assert.ok(torn <= 1, 'at most one file is torn');
        for (const handle of model.handles) await rejectsWithCode(handle.real.size(), 'EBADF');
      }),
      { numRuns: 400 },
    );
  });
});
