import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { AssertionError } from '../../core/assert.js';
import { ErrorCode, RingkvError } from '../../core/errors.js';
import { SeededRandom, type Random } from '../../core/random.js';
import { NodeFileSystem, type FileHandle, type FileSystem } from '../../world/file-system.js';
import {
  decodeManifest,
  emptyManifest,
  encodeManifest,
  manifestFileName,
  orphanFiles,
  readManifest,
  tableFileName,
  writeManifest,
  type ManifestFile,
  type ManifestRangeTombstone,
  type ManifestState,
} from './manifest.js';

const dir = '/db';

/** One file's bytes: what a read sees now, and what survives a crash (the last sync). */
class Inode {
  data = new Uint8Array(0);
  synced = new Uint8Array(0);
  /** Written or truncated since the last sync. */
  dirty = false;
}

/**
 * A disk that loses what was not made durable (LevelDB's fault-injecting Env): file contents
 * survive a crash only as of their last `sync`, directory entries (create, rename, unlink) only as
 * of the last `syncDirectory`. `crash(random)` goes further and keeps an arbitrary mix of the
 * unsynced state: each directory entry old or new, each file's contents old, new, or torn.
 */
class CrashDisk implements FileSystem {
  private entries = new Map<string, Inode>();
  private syncedEntries = new Map<string, Inode>();

  open(path: string, options: { create: boolean }): Promise<FileHandle> {
    let inode = this.entries.get(path);
    if (inode === undefined) {
      if (!options.create) return Promise.reject(new Error(`ENOENT: ${path}`));
      inode = new Inode();
      this.entries.set(path, inode);
    }
    return Promise.resolve(new CrashDiskHandle(inode));
  }

  readFile(path: string): Promise<Uint8Array> {
    const inode = this.entries.get(path);
    return inode === undefined ? Promise.reject(new Error(`ENOENT: ${path}`)) : Promise.resolve(inode.data.slice());
  }

  exists(path: string): Promise<boolean> {
    return Promise.resolve(path === dir || this.entries.has(path));
  }

  mkdir(): Promise<void> {
    return Promise.resolve();
  }

  readdir(path: string): Promise<string[]> {
    const names = [...this.entries.keys()].filter((entry) => parent(entry) === path).map((entry) => entry.slice(path.length + 1));
    return Promise.resolve(names);
  }

  rename(from: string, to: string): Promise<void> {
    const inode = this.entries.get(from);
    if (inode === undefined) return Promise.reject(new Error(`ENOENT: ${from}`));
    this.entries.delete(from);
    this.entries.set(to, inode);
    return Promise.resolve();
  }

  unlink(path: string): Promise<void> {
    if (!this.entries.delete(path)) return Promise.reject(new Error(`ENOENT: ${path}`));
    return Promise.resolve();
  }

  syncDirectory(path: string): Promise<void> {
    for (const entry of [...this.syncedEntries.keys()]) if (parent(entry) === path) this.syncedEntries.delete(entry);
    for (const [entry, inode] of this.entries) if (parent(entry) === path) this.syncedEntries.set(entry, inode);
    return Promise.resolve();
  }

  /** Without `random`: every unsynced change is lost. With it: each is kept, lost or torn at random. */
  crash(random?: Random): void {
    const entries = new Map<string, Inode>();
    for (const path of new Set([...this.entries.keys(), ...this.syncedEntries.keys()])) {
      const chosen = random === undefined || random.nextInt(2) === 0 ? this.syncedEntries.get(path) : this.entries.get(path);
      if (chosen !== undefined) entries.set(path, chosen);
    }
    for (const inode of new Set([...this.entries.values(), ...this.syncedEntries.values()])) {
      if (!inode.dirty) continue;
      inode.dirty = false;
      const choice = random === undefined ? 0 : random.nextInt(3);
      if (choice === 0) inode.data = inode.synced.slice();
      if (choice === 2) inode.data = inode.data.slice(0, random!.nextInt(inode.data.length + 1));
      inode.synced = inode.data.slice();
    }
    this.entries = entries;
    this.syncedEntries = new Map(entries);
  }

  /** Test access to a file's bytes, to flip bits in them. */
  inode(path: string): Inode {
    const inode = this.entries.get(path);
    assert.ok(inode !== undefined, `no file ${path}`);
    return inode;
  }
}

class CrashDiskHandle implements FileHandle {
  constructor(private readonly inode: Inode) {}

  read(position: number, length: number): Promise<Uint8Array> {
    return Promise.resolve(this.inode.data.slice(position, position + length));
  }

  write(data: Uint8Array, position: number): Promise<void> {
    const grown = new Uint8Array(Math.max(this.inode.data.length, position + data.length));
    grown.set(this.inode.data);
    grown.set(data, position);
    this.inode.data = grown;
    this.inode.dirty = true;
    return Promise.resolve();
  }

  sync(): Promise<void> {
    this.inode.synced = this.inode.data.slice();
    this.inode.dirty = false;
    return Promise.resolve();
  }

  size(): Promise<number> {
    return Promise.resolve(this.inode.data.length);
  }

  truncate(length: number): Promise<void> {
    const resized = new Uint8Array(length);
    resized.set(this.inode.data.subarray(0, length));
    this.inode.data = resized;
    this.inode.dirty = true;
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const parent = (path: string): string => path.slice(0, path.lastIndexOf('/'));

class Crash extends Error {}

/**
 * Passes calls through to `inner` until `stepsMax` calls (on the file system and its handles)
 * have completed; the next call throws Crash instead, as if the process died there.
 */
function crashingAfter(inner: FileSystem, stepsMax: number): { fs: FileSystem; steps: () => number } {
  let steps = 0;
  const step = (): void => {
    if (steps === stepsMax) throw new Crash(`crash after step ${stepsMax}`);
    steps++;
  };
  const wrapHandle = (handle: FileHandle): FileHandle => ({
    read: (position, length) => (step(), handle.read(position, length)),
    write: (data, position) => (step(), handle.write(data, position)),
    sync: () => (step(), handle.sync()),
    size: () => (step(), handle.size()),
    truncate: (length) => (step(), handle.truncate(length)),
    // Closing releases the handle whatever happens; it is no durability step.
    close: () => handle.close(),
  });
  const fs: FileSystem = {
    open: async (path, options) => (step(), wrapHandle(await inner.open(path, options))),
    readFile: (path) => (step(), inner.readFile(path)),
    exists: (path) => (step(), inner.exists(path)),
    mkdir: (path) => (step(), inner.mkdir(path)),
    readdir: (path) => (step(), inner.readdir(path)),
    rename: (from, to) => (step(), inner.rename(from, to)),
    unlink: (path) => (step(), inner.unlink(path)),
    syncDirectory: (path) => (step(), inner.syncDirectory(path)),
  };
  return { fs, steps: () => steps };
}

const keyArbitrary = fc.uint8Array({ maxLength: 12 });
const safeCount = fc.oneof(fc.nat(1000), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));

const fileArbitrary = (id: number): fc.Arbitrary<ManifestFile> =>
  fc
    .record({
      level: fc.nat(63),
      keys: fc.tuple(keyArbitrary, keyArbitrary),
      entries: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      fileBytes: safeCount,
      sequences: fc.tuple(safeCount, safeCount),
    })
    .map(({ level, keys, entries, fileBytes, sequences }) => {
      const [smallestKey, largestKey] = Buffer.compare(keys[0], keys[1]) <= 0 ? keys : [keys[1], keys[0]];
      const [smallestSequence, largestSequence] = sequences[0] <= sequences[1] ? sequences : [sequences[1], sequences[0]];
      return { id, level, smallestKey, largestKey, entries, fileBytes, smallestSequence, largestSequence };
    });

const rangeTombstoneArbitrary: fc.Arbitrary<ManifestRangeTombstone> = fc
  .record({ bounds: fc.uniqueArray(keyArbitrary, { minLength: 2, maxLength: 2, comparator: (left, right) => Buffer.compare(left, right) === 0 }), open: fc.boolean(), sequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }) })
  .map(({ bounds, open, sequence }) => {
    const [start, end] = Buffer.compare(bounds[0]!, bounds[1]!) < 0 ? bounds : [bounds[1]!, bounds[0]!];
    return { start: start!, end: open ? undefined : end, sequence };
  });

const stateArbitrary = (version: fc.Arbitrary<number>): fc.Arbitrary<ManifestState> =>
  fc
    .record({
      ids: fc.uniqueArray(fc.nat(100_000), { maxLength: 12 }),
      version,
      spareIds: safeCount,
      logSegmentFloor: safeCount,
      lastFlushedSequence: safeCount,
      rangeTombstones: fc.array(rangeTombstoneArbitrary, { maxLength: 3 }),
    })
    .chain(({ ids, version, spareIds, logSegmentFloor, lastFlushedSequence, rangeTombstones }) =>
      fc.tuple(...ids.map(fileArbitrary)).map((files) => ({
        version,
        files,
        logSegmentFloor,
        nextFileId: Math.min(Math.max(0, ...ids) + 1 + spareIds, Number.MAX_SAFE_INTEGER),
        lastFlushedSequence,
        ...(rangeTombstones.length > 0 ? { rangeTombstones } : {}),
      })),
    );

/** Plain values, so deepEqual compares key bytes and not Buffer vs Uint8Array. */
const plain = (state: ManifestState | undefined): unknown => {
  if (state === undefined) return undefined;
  const files = state.files.map((file) => ({ ...file, smallestKey: [...file.smallestKey], largestKey: [...file.largestKey] }));
  const rangeTombstones = state.rangeTombstones?.map((tombstone) => ({ ...tombstone, start: [...tombstone.start], end: tombstone.end === undefined ? undefined : [...tombstone.end] }));
  return { ...state, files, ...(rangeTombstones === undefined ? {} : { rangeTombstones }) };
};

const isCorruption = (path: string) => (error: unknown): boolean =>
  error instanceof RingkvError && error.code === ErrorCode.corruption && error.message.includes(path);

const sampleFile = (id: number, smallest: string, largest: string): ManifestFile => ({
  id,
  level: 0,
  smallestKey: Buffer.from(smallest),
  largestKey: Buffer.from(largest),
  entries: 10,
  fileBytes: 4096,
  smallestSequence: id * 100,
  largestSequence: id * 100 + 9,
});

const stateOne: ManifestState = { version: 1, files: [sampleFile(1, 'a', 'm')], logSegmentFloor: 2, nextFileId: 2, lastFlushedSequence: 109 };
const stateTwo: ManifestState = {
  version: 2,
  files: [sampleFile(2, 'b', 'z'), sampleFile(1, 'a', 'm')],
  logSegmentFloor: 3,
  nextFileId: 3,
  lastFlushedSequence: 209,
};

/**
 * Crashes writeManifest(`next`) after each step in turn, on a disk holding `previous` (none:
 * a new engine), and checks that the reopened directory reads as `previous` or `next`, and takes
 * the following write. `random`: keep a random mix of the unsynced state instead of losing it.
 */
async function crashAtEveryStep(previous: ManifestState | undefined, next: ManifestState, random?: Random): Promise<number> {
  for (let stepsMax = 0; ; stepsMax++) {
    const disk = new CrashDisk();
    if (previous !== undefined) {
      for (let version = 1; version <= previous.version; version++) await writeManifest(disk, dir, { ...previous, version });
    }
    const crashing = crashingAfter(disk, stepsMax);
    try {
      await writeManifest(crashing.fs, dir, next);
      return stepsMax;
    } catch (error) {
      if (!(error instanceof Crash)) throw error;
    }
    disk.crash(random);
    const reopened = await readManifest(disk, dir);
    const expected = [plain(previous), plain(next)];
    const read = JSON.stringify(plain(reopened));
    assert.ok(expected.some((state) => JSON.stringify(state) === read), `crash after step ${stepsMax}: read ${read}`);
    // The engine goes on from what it read: the next version must write and read back.
    const following = { ...(reopened ?? next), version: (reopened?.version ?? 0) + 1 };
    await writeManifest(disk, dir, following);
    assert.deepEqual(plain(await readManifest(disk, dir)), plain(following));
  }
}

describe('manifest', () => {
  it('manifest: encode then decode is the identity (fast-check)', () => {
    fc.assert(
      fc.property(stateArbitrary(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })), (state) => {
        assert.deepEqual(plain(decodeManifest(encodeManifest(state), 'm')), plain(state));
      }),
      { numRuns: 300 },
    );
  });

  it('manifest: written versions read back, older manifests are deleted (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stateArbitrary(fc.constant(1)), { minLength: 1, maxLength: 4 }), async (states) => {
        const disk = new CrashDisk();
        assert.equal(await readManifest(disk, dir), undefined);
        for (const [index, state] of states.entries()) {
          const versioned = { ...state, version: index + 1 };
          await writeManifest(disk, dir, versioned);
          assert.deepEqual(plain(await readManifest(disk, dir)), plain(versioned));
          assert.deepEqual((await disk.readdir(dir)).sort(), ['CURRENT', manifestFileName(index + 1)]);
        }
      }),
      { numRuns: 100 },
    );
  });

  it('manifest: a crash after any step of the first write reads as no manifest or the new one (unsynced lost)', async () => {
    const steps = await crashAtEveryStep(undefined, stateOne);
    assert.ok(steps >= 10, `writeManifest took only ${steps} steps`);
  });

  it('manifest: a crash after any step of a later write reads as the old or the new state (unsynced lost)', async () => {
    await crashAtEveryStep(stateOne, stateTwo);
  });

  it('manifest: a crash after any step reads old or new when unsynced changes survive at random (50 seeds)', async () => {
    for (let seed = 1; seed <= 50; seed++) {
      await crashAtEveryStep(undefined, stateOne, new SeededRandom(seed));
      await crashAtEveryStep(stateOne, stateTwo, new SeededRandom(seed));
    }
  });

  it('manifest: every flipped bit in the manifest file is reported as corruption naming it', async () => {
    const disk = new CrashDisk();
    await writeManifest(disk, dir, stateOne);
    await writeManifest(disk, dir, stateTwo);
    const path = `${dir}/${manifestFileName(2)}`;
    const inode = disk.inode(path);
    const original = inode.data.slice();
    for (let bit = 0; bit < original.length * 8; bit++) {
      inode.data = original.slice();
      inode.data[bit >> 3]! ^= 1 << (bit & 7);
      await assert.rejects(readManifest(disk, dir), isCorruption(path), `bit ${bit}`);
    }
    inode.data = original;
    assert.deepEqual(plain(await readManifest(disk, dir)), plain(stateTwo));
  });

  it('manifest: every flipped bit in CURRENT is corruption, even one that names a leftover older manifest', async () => {
    const disk = new CrashDisk();
    await writeManifest(disk, dir, stateOne);
    await writeManifest(disk, dir, stateTwo);
    // A lost unlink: MANIFEST-00000003 and MANIFEST-00000000 differ from ...02 by one bit.
    for (const version of [1, 3]) {
      const handle = await disk.open(`${dir}/${manifestFileName(version)}`, { create: true });
      await handle.write(encodeManifest({ ...stateOne, version }), 0);
    }
    const path = `${dir}/CURRENT`;
    const inode = disk.inode(path);
    const original = inode.data.slice();
    for (let bit = 0; bit < original.length * 8; bit++) {
      inode.data = original.slice();
      inode.data[bit >> 3]! ^= 1 << (bit & 7);
      await assert.rejects(readManifest(disk, dir), isCorruption(path), `bit ${bit}`);
    }
  });

  it('manifest: flipped bits anywhere in encoded states are corruption (fast-check)', () => {
    fc.assert(
      fc.property(stateArbitrary(fc.integer({ min: 1, max: 1000 })), fc.nat(), (state, bitSeed) => {
        const bytes = encodeManifest(state);
        const bit = bitSeed % (bytes.length * 8);
        bytes[bit >> 3]! ^= 1 << (bit & 7);
        assert.throws(() => decodeManifest(bytes, 'flipped'), isCorruption('flipped'));
      }),
      { numRuns: 300 },
    );
  });

  it('manifest: truncated files and trailing bytes are corruption, never a shorter state', () => {
    const bytes = encodeManifest(stateTwo);
    for (let length = 0; length < bytes.length; length++) {
      assert.throws(() => decodeManifest(bytes.subarray(0, length), 'short'), isCorruption('short'), `length ${length}`);
    }
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    assert.throws(() => decodeManifest(longer, 'long'), isCorruption('long'));
  });

  it('manifest: CURRENT naming a missing manifest is corruption naming that manifest', async () => {
    const disk = new CrashDisk();
    await writeManifest(disk, dir, stateOne);
    await disk.unlink(`${dir}/${manifestFileName(1)}`);
    await assert.rejects(readManifest(disk, dir), isCorruption(manifestFileName(1)));
  });

  it('manifest: a version that does not follow CURRENT\'s, or an invalid state, is a bug (asserts)', async () => {
    const disk = new CrashDisk();
    await assert.rejects(writeManifest(disk, dir, stateTwo), AssertionError);
    await assert.rejects(writeManifest(disk, dir, { ...emptyManifest() }), AssertionError);
    await writeManifest(disk, dir, stateOne);
    await assert.rejects(writeManifest(disk, dir, stateOne), AssertionError);
    const invalid: [string, ManifestState][] = [
      ['smallest key above largest', { ...stateTwo, files: [sampleFile(1, 'z', 'a')] }],
      ['id listed twice', { ...stateTwo, files: [sampleFile(1, 'a', 'b'), sampleFile(1, 'c', 'd')] }],
      ['id not below nextFileId', { ...stateTwo, files: [sampleFile(3, 'a', 'b')] }],
      ['empty table', { ...stateTwo, files: [{ ...sampleFile(1, 'a', 'b'), entries: 0 }] }],
      ['sequences reversed', { ...stateTwo, files: [{ ...sampleFile(1, 'a', 'b'), smallestSequence: 5, largestSequence: 4 }] }],
      ['fractional counter', { ...stateTwo, lastFlushedSequence: 1.5 }],
      ['negative level', { ...stateTwo, files: [{ ...sampleFile(1, 'a', 'b'), level: -1 }] }],
    ];
    for (const [what, state] of invalid) await assert.rejects(writeManifest(disk, dir, state), AssertionError, what);
    assert.deepEqual(plain(await readManifest(disk, dir)), plain(stateOne));
  });

  it('manifest: orphan files: unreferenced tables, stale manifests and CURRENT.tmp; nothing else', async () => {
    const disk = new CrashDisk();
    await writeManifest(disk, dir, stateOne);
    await writeManifest(disk, dir, stateTwo);
    const tables = [tableFileName(1), tableFileName(2), tableFileName(3), tableFileName(123_456_789)];
    const names = [...tables, manifestFileName(1), 'CURRENT.tmp', 'LOG', '1.sst', 'abc.sst', '00000004.sst.tmp'];
    for (const name of names) await disk.open(`${dir}/${name}`, { create: true });
    assert.deepEqual(await orphanFiles(disk, dir, stateTwo), ['00000003.sst', '123456789.sst', 'CURRENT.tmp', 'MANIFEST-00000001']);
    // A new engine (no CURRENT): every table and manifest is unreferenced.
    assert.deepEqual(await orphanFiles(disk, dir, emptyManifest()), [
      '00000001.sst', '00000002.sst', '00000003.sst', '123456789.sst', 'CURRENT.tmp', 'MANIFEST-00000001', 'MANIFEST-00000002',
    ]);
  });

  it('manifest: on the real disk (NodeFileSystem): write, overwrite, read back, one manifest left', async () => {
    const root = await mkdtemp(join(tmpdir(), 'ringkv-manifest-'));
    try {
      const fs = new NodeFileSystem();
      assert.equal(await readManifest(fs, root), undefined);
      await writeManifest(fs, root, stateOne);
      await writeManifest(fs, root, stateTwo);
      assert.deepEqual(plain(await readManifest(fs, root)), plain(stateTwo));
      assert.deepEqual((await fs.readdir(root)).sort(), ['CURRENT', manifestFileName(2)]);
      assert.deepEqual(await orphanFiles(fs, root, stateTwo), []);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
