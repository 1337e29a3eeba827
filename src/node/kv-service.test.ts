import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { keyPartition } from '../core/token.js';
import { ErrorCode, RingkvError } from '../core/errors.js';
import { SeededRandom } from '../core/random.js';
import { LsmEngine } from '../storage/lsm/lsm-engine.js';
import { MemoryEngine } from '../storage/memory-engine.js';
import { createMemoryFileSystem } from '../world/memory-file-system.js';
import { tinyLsmOptions } from '../../test/helpers/lsm-options.js';
import type { Engine } from '../storage/engine.js';
import { SystemClock } from '../world/clock.js';
import { DelayedEngine } from '../../test/helpers/resp-fixture.js';
import { KvService, type WriteOutcome } from './kv-service.js';
import { parseStorageKey, storageKey } from './storage-key.js';
import { decodeObject, objectVersionHash } from './stored-object.js';
import type { Result } from '../core/errors.js';

const limits = { keyBytesMax: 64, valueBytesMax: 256, siblingsMax: 3 };

function service(engine: Engine = new MemoryEngine()): KvService {
  return new KvService(engine, { actor: 'node-a', clock: new SystemClock(), limits });
}

const key = Buffer.from('k');

function text(result: Awaited<ReturnType<KvService['get']>>): string[] {
  assert.ok(result.ok);
  return (result.value?.siblings ?? []).map((sibling) => Buffer.from(sibling.value ?? []).toString()).sort();
}

function written(result: Result<WriteOutcome>): WriteOutcome {
  assert.ok(result.ok, result.ok ? '' : result.message);
  return result.value;
}

describe('kv: versions and siblings', () => {
  it('kv: a write with the context of a read replaces exactly what it saw (memory engine)', async () => {
    const kv = service();
    written(await kv.put('ns', key, Buffer.from('a')));
    const read = await kv.get('ns', key);
    assert.ok(read.ok && read.value !== undefined);
    written(await kv.put('ns', key, Buffer.from('b'))); // blind: concurrent with the read
    written(await kv.put('ns', key, Buffer.from('c'), { context: read.value.context }));
    assert.deepEqual(text(await kv.get('ns', key)), ['b', 'c']);
  });

  it('kv: the sibling limit counts live values only, so a blind write after a delete succeeds (siblingsMax 3)', async () => {
    const kv = service();
    written(await kv.put('ns', key, Buffer.from('a')));
    const outcome = written(await kv.delete('ns', key, { context: 'current' }));
    assert.equal(outcome.written, true);
    assert.equal(outcome.previouslyPresent, true);
    for (const value of ['x', 'y', 'z']) written(await kv.put('ns', key, Buffer.from(value)));
    assert.deepEqual(text(await kv.get('ns', key)), ['x', 'y', 'z']);
    const refused = await kv.put('ns', key, Buffer.from('w'));
    assert.ok(!refused.ok);
    assert.equal(refused.code, 'TOO_MANY_SIBLINGS');
  });

  it('kv: NX writes only when absent, XX only when present, and a delete of nothing writes nothing', async () => {
    const kv = service();
    assert.equal(written(await kv.put('ns', key, Buffer.from('a'), { context: 'current', onlyIfPresent: true })).written, false);
    assert.equal(written(await kv.put('ns', key, Buffer.from('a'), { context: 'current', onlyIfAbsent: true })).written, true);
    assert.equal(written(await kv.put('ns', key, Buffer.from('b'), { context: 'current', onlyIfAbsent: true })).written, false);
    assert.equal(written(await kv.put('ns', key, Buffer.from('c'), { context: 'current', onlyIfPresent: true })).written, true);
    assert.deepEqual(text(await kv.get('ns', key)), ['c']);
    assert.equal(written(await kv.delete('ns', Buffer.from('absent'), { context: 'current' })).written, false);
  });

  it('kv: limits and names are checked before any storage is touched', async () => {
    const kv = service();
    const cases: [Promise<Result<unknown>> | Result<unknown>, string][] = [
      [kv.put('ns', Buffer.alloc(65), Buffer.from('v')), 'KEY_TOO_LARGE'],
      [kv.put('ns', key, Buffer.alloc(257)), 'VALUE_TOO_LARGE'],
      [kv.put('bad name', key, Buffer.from('v')), 'NAMESPACE_INVALID'],
      [kv.get('ns', Buffer.alloc(0)), 'KEY_INVALID'],
      [kv.put('ns', key, Buffer.from('v'), { context: 'garbage!' }), 'CONTEXT_INVALID'],
      [kv.put('ns', key, Buffer.from('v'), { contentType: 'text/\u00e9' }), 'BAD_REQUEST'],
    ];
    for (const [pending, code] of cases) {
      const result = await pending;
      assert.ok(!result.ok);
      assert.equal(result.code, code);
    }
    kv.detach();
    const unavailable = await kv.get('ns', key);
    assert.ok(!unavailable.ok);
    assert.equal(unavailable.code, 'UNAVAILABLE');
  });
});
describe('kv: overwrites and clocks', () => {
  it('kv: a delete of nothing stored writes nothing, unless a cluster coordinator asks it to record the tombstone', async () => {
    const kv = service();
    const skipped = written(await kv.delete('ns', key, { context: 'AQA' }));
    assert.equal(skipped.written, false);
    // A lagging replica coordinating a delete: the tombstone carries the context to the replicas that hold the values.
    const recorded = written(await kv.delete('ns', key, { recordTombstone: true }));
    assert.equal(recorded.written, true);
    assert.ok(recorded.encoded !== undefined);
    assert.deepEqual(text(await kv.get('ns', key)), []);
  });

  it('kv: an overwrite is newer than what it replaces even when this node\'s clock is behind (last-write-wins)', async () => {
    const engine = new MemoryEngine();
    const ahead = new KvService(engine, { actor: 'node-a', clock: { nowMs: () => 0, wallMs: () => 2_000_000, setTimer: () => ({ cancel() {} }) }, limits });
    const behind = new KvService(engine, { actor: 'node-b', clock: { nowMs: () => 0, wallMs: () => 1_000_000, setTimer: () => ({ cancel() {} }) }, limits });
    written(await ahead.put('ns', key, Buffer.from('first'), { context: 'current' }));
    written(await behind.put('ns', key, Buffer.from('second'), { context: 'current' }));
    const read = await behind.get('ns', key);
    assert.ok(read.ok && read.value !== undefined);
    assert.deepEqual(read.value.siblings.map((sibling) => [Buffer.from(sibling.value ?? []).toString(), sibling.writtenAtMs]), [['second', 2_000_001]]);
    // A blind write keeps its own clock's time: it replaces nothing.
    written(await behind.put('ns', key, Buffer.from('third')));
    const both = await behind.get('ns', key);
    assert.ok(both.ok && both.value !== undefined);
    assert.deepEqual(both.value.siblings.map((sibling) => sibling.writtenAtMs).sort(), [1_000_000, 2_000_001]);
  });
});


describe('kv: read-modify-write is serialized per key when the engine is slow', () => {
  it('kv: concurrent overwrites through an async engine keep exactly one value, the last issued (DelayedEngine 2 ms)', async () => {
    const kv = service(new DelayedEngine(2));
    const writes = Array.from({ length: 20 }, (_, index) => kv.put('ns', key, Buffer.from(`v${index}`), { context: 'current' }));
    const outcomes = await Promise.all(writes);
    outcomes.forEach((outcome) => written(outcome));
    assert.deepEqual(text(await kv.get('ns', key)), ['v19']);
  });

  it('kv: concurrent blind writes through an async engine are all kept as siblings (property, DelayedEngine 0 ms)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 1, maxLength: 3 }), async (valuesToWrite) => {
        const kv = service(new DelayedEngine(0));
        await Promise.all(valuesToWrite.map((value) => kv.put('ns', key, Buffer.from(value))));
        assert.deepEqual(text(await kv.get('ns', key)), [...valuesToWrite].sort());
      }),
      { numRuns: 50 },
    );
  });

  it('kv: operations on different keys do not wait for each other while one key is serialized (10 keys, DelayedEngine 5 ms)', async () => {
    const engine = new DelayedEngine(5);
    let inFlight = 0;
    let inFlightMax = 0;
    const get = engine.get.bind(engine);
    engine.get = async (bytes: Uint8Array) => {
      inFlightMax = Math.max(inFlightMax, ++inFlight);
      try {
        return await get(bytes);
      } finally {
        inFlight--;
      }
    };
    const kv = service(engine);
    await Promise.all(Array.from({ length: 10 }, (_, index) => kv.put('ns', Buffer.from(`key-${index}`), Buffer.from('v'))));
    assert.equal(inFlightMax, 10, 'every key read at once');
    inFlightMax = 0;
    await Promise.all(Array.from({ length: 10 }, () => kv.put('ns', key, Buffer.from('v'))));
    assert.equal(inFlightMax, 1, 'writes to one key read it one at a time');
  });
});

describe('kv: merging another replica\'s object', () => {
  it('kv: a descendant replaces what is stored, a concurrent object is merged into siblings', async () => {
    const here = service();
    const there = new KvService(new MemoryEngine(), { actor: 'node-b', clock: new SystemClock(), limits });
    const base = written(await here.put('ns', key, Buffer.from('base')));
    // Replica b received the base, then coordinated a write on top of it: a descendant.
    await there.mergeObject('ns', key, base.encoded as Uint8Array);
    const descendant = written(await there.put('ns', key, Buffer.from('newer'), { context: 'current' }));
    assert.ok((await here.mergeObject('ns', key, descendant.encoded as Uint8Array)).ok);
    assert.deepEqual(text(await here.get('ns', key)), ['newer']);
    // Meanwhile each side takes a blind write: concurrent objects, both kept after merging.
    const mine = written(await here.put('ns', key, Buffer.from('mine')));
    const theirs = written(await there.put('ns', key, Buffer.from('theirs')));
    assert.ok((await here.mergeObject('ns', key, theirs.encoded as Uint8Array)).ok);
    assert.ok((await there.mergeObject('ns', key, mine.encoded as Uint8Array)).ok);
    assert.deepEqual(text(await here.get('ns', key)), ['mine', 'newer', 'theirs']);
    assert.deepEqual(text(await there.get('ns', key)), ['mine', 'newer', 'theirs']);
  });
});

describe('kv: partitions', () => {
  const partitionCount = 16;
  const engines: [string, () => Promise<Engine>][] = [
    ['memory engine', () => Promise.resolve(new MemoryEngine())],
    ['lsm engine, tiny memtable', () => LsmEngine.open({ fs: createMemoryFileSystem({ random: new SeededRandom(5) }), clock: new SystemClock() }, '/lsm', tinyLsmOptions)],
  ];
  for (const [label, open] of engines) {
    it(`kv: a partition lists exactly its keys (tombstones too), counts them, and drops them alone (${label})`, async () => {
      const engine = await open();
      try {
        const kv = new KvService(engine, { actor: 'node-a', clock: new SystemClock(), limits: { ...limits, siblingsMax: 100 } });
        const expected = new Map<number, Set<string>>();
        for (let index = 0; index < 300; index++) {
          const namespace = index % 3 === 0 ? 'other' : 'ns';
          const itemKey = Buffer.from(`key-${index}`);
          written(await kv.put(namespace, itemKey, Buffer.from(`value-${index}`)));
          if (index % 10 === 0) written(await kv.delete(namespace, itemKey, { context: 'current' }));
          const partition = keyPartition(namespace, itemKey, partitionCount);
          if (!expected.has(partition)) expected.set(partition, new Set());
          expected.get(partition)!.add(`${namespace}/key-${index}`);
        }
        for (let partition = 0; partition < partitionCount; partition++) {
          const found: string[] = [];
          for await (const item of kv.partitionObjects(partition, partitionCount)) found.push(`${item.namespace}/${Buffer.from(item.key).toString()}`);
          assert.deepEqual(new Set(found), expected.get(partition) ?? new Set(), `partition ${partition}`);
          assert.equal((await kv.partitionStats(partition, partitionCount)).objects, found.length);
        }
        const dropped = [...expected.keys()][0]!;
        assert.ok((await kv.dropPartition(dropped, partitionCount)).ok);
        for (let partition = 0; partition < partitionCount; partition++) {
          const stats = await kv.partitionStats(partition, partitionCount);
          assert.equal(stats.objects, partition === dropped ? 0 : (expected.get(partition)?.size ?? 0), `partition ${partition} after dropping ${dropped}`);
        }
      } finally {
        await engine.close();
      }
    });
  }
});

describe('kv: hint markers (hinted handoff)', () => {
  async function markers(kv: KvService, target?: string): Promise<string[]> {
    const found: string[] = [];
    for await (const marker of kv.hintMarkers(target)) found.push(`${marker.target}:${parseStorageKey(marker.engineKey)?.namespace}/${Buffer.from(parseStorageKey(marker.engineKey)?.key ?? []).toString()}`);
    return found;
  }

  it('kv: a write for a down primary stores the object and a marker naming it; markers stay out of partitions and key listings', async () => {
    const kv = service();
    written(await kv.put('ns', Buffer.from('a'), Buffer.from('1'), { hintFor: 'node-x' }));
    assert.ok((await kv.mergeObject('ns', Buffer.from('b'), written(await service().put('ns', Buffer.from('b'), Buffer.from('2'))).encoded!, 'node-y')).ok);
    written(await kv.delete('ns', Buffer.from('a'), { context: 'current', hintFor: 'node-y' }));
    written(await kv.put('ns', Buffer.from('c'), Buffer.from('3')));
    assert.deepEqual(await markers(kv), ['node-x:ns/a', 'node-y:ns/a', 'node-y:ns/b']);
    assert.deepEqual(await markers(kv, 'node-y'), ['node-y:ns/a', 'node-y:ns/b']);
    const listed = await kv.keys('ns', { limit: 10 });
    assert.ok(listed.ok);
    assert.deepEqual(listed.value.map((found) => Buffer.from(found).toString()).sort(), ['b', 'c']);
    let objects = 0;
    for (let partition = 0; partition < 8; partition++) for await (const _ of kv.partitionObjects(partition, 8)) objects++;
    assert.equal(objects, 3, 'a, b and c; no marker');
  });

  it('kv: a delivered hint loses its marker only if the object did not change since; the local copy goes only when asked and no other target waits for it', async () => {
    const kv = service();
    written(await kv.put('ns', key, Buffer.from('1'), { hintFor: 'node-x' }));
    const [marker] = await (async () => {
      const found = [];
      for await (const entry of kv.hintMarkers('node-x')) found.push(entry);
      return found;
    })();
    assert.ok(marker !== undefined);
    const sent = await kv.readEngineKey(marker.engineKey);
    assert.ok(sent.ok && sent.value !== undefined);
    const snapshot = Buffer.from(sent.value);
    written(await kv.put('ns', key, Buffer.from('2'), { context: 'current', hintFor: 'node-x' }));
    const stale = await kv.completeHint('node-x', marker.engineKey, snapshot, { otherTargets: [] });
    assert.ok(stale.ok && stale.value === false, 'a newer write keeps the marker');
    assert.deepEqual(await markers(kv), ['node-x:ns/k']);

    written(await kv.put('ns', key, Buffer.from('3'), { context: 'current', hintFor: 'node-y' }));
    const current = await kv.readEngineKey(marker.engineKey);
    assert.ok(current.ok && current.value !== undefined);
    const done = await kv.completeHint('node-x', marker.engineKey, Buffer.from(current.value), { otherTargets: ['node-y'] });
    assert.ok(done.ok && done.value === true);
    assert.deepEqual(await markers(kv), ['node-y:ns/k']);
    assert.deepEqual(text(await kv.get('ns', key)), ['3'], 'kept: node-y still waits for it');
    const last = await kv.completeHint('node-y', marker.engineKey, Buffer.from(current.value), { otherTargets: ['node-x'] });
    assert.ok(last.ok && last.value === true);
    assert.deepEqual(await markers(kv), []);
    assert.deepEqual(text(await kv.get('ns', key)), [], 'dropped: no target left and this node does not own it');
  });
});

describe('kv: dots after dropping objects (KV679)', () => {
  it('kv: a write to a key of a partition this node dropped goes out under a new actor, never reusing a dot of the dropped object', async () => {
    const kv = service();
    const renewals: string[] = [];
    kv.onActorRenewal(async () => {
      renewals.push('renewed');
      return `node-a~${renewals.length}`;
    });
    const first = written(await kv.put('ns', key, Buffer.from('1')));
    const dotOf = (encoded: Uint8Array | undefined): string => {
      const object = decodeObject(encoded!);
      return object.entries.map((entry) => `${entry.actor}:${entry.counter}`).join(',');
    };
    assert.equal(dotOf(first.encoded), 'node-a:1');
    const partition = keyPartition('ns', key, 16);
    assert.ok((await kv.dropPartition(partition, 16)).ok);
    assert.equal(kv.droppedUnderActor, true);
    const second = written(await kv.put('ns', key, Buffer.from('2')));
    assert.equal(dotOf(second.encoded), 'node-a~1:1', 'not node-a:1 again');
    assert.equal(kv.droppedUnderActor, false);
    const other = Buffer.from('elsewhere');
    written(await kv.put('ns', other, Buffer.from('3')));
    assert.equal(renewals.length, 1, 'one renewal, and only for the dropped partition');
  });

  it('kv: a key whose tombstone was reaped starts its next history past the counters the reaped tombstone held, and the actor is not kept clean', async () => {
    const kv = service();
    const dotOf = (encoded: Uint8Array | undefined): string => decodeObject(encoded!).entries.map((entry) => `${entry.actor}:${entry.counter}`).join(',');
    written(await kv.put('ns', key, Buffer.from('1')));
    written(await kv.put('ns', key, Buffer.from('2'), { context: 'current' }));
    const deleted = written(await kv.delete('ns', key, { context: 'current' }));
    assert.equal(dotOf(deleted.encoded), 'node-a:3');
    const engineKey = storageKey('ns', key);
    const mismatched = await kv.reapTombstone(engineKey, objectVersionHash(deleted.encoded!) ^ 1n);
    assert.ok(mismatched.ok && !mismatched.value, 'another version is not reaped');
    const reaped = await kv.reapTombstone(engineKey, objectVersionHash(deleted.encoded!));
    assert.ok(reaped.ok && reaped.value, 'the tombstone was reaped');
    const gone = await kv.get('ns', key);
    assert.ok(gone.ok && gone.value === undefined);
    assert.equal(kv.droppedUnderActor, true, 'an actor that reaped is not kept across a restart');
    const blind = written(await kv.put('ns', key, Buffer.from('3')));
    assert.equal(dotOf(blind.encoded), 'node-a:4', 'not node-a:1, a dot contexts of the old history cover');
    const other = written(await kv.put('ns', Buffer.from('elsewhere'), Buffer.from('4')));
    assert.equal(dotOf(other.encoded), 'node-a:1', 'a key of another token prefix starts at 1');
  });

  it('kv: a write the engine fails after it was issued (its dot may be replicated already) makes the next write renew the actor', async () => {
    // The engine takes the write (reads see it) and then fails to make it durable, as a commit
    // log that fails its fsync does.
    const memory = new MemoryEngine();
    let failNext = false;
    const engine = new Proxy(memory, {
      get(target, property, receiver) {
        if (property === 'put' && failNext) {
          failNext = false;
          return (engineKey: Uint8Array, value: Uint8Array) => {
            void target.put(engineKey, value);
            return Promise.reject(new RingkvError(ErrorCode.unavailable, 'commit log: fsync failed'));
          };
        }
        const member = Reflect.get(target, property, receiver) as unknown;
        return typeof member === 'function' ? (member as (...args: unknown[]) => unknown).bind(target) : member;
      },
    });
    const kv = service(engine);
    const renewals: string[] = [];
    kv.onActorRenewal(async () => {
      renewals.push('renewed');
      return `node-a~${renewals.length}`;
    });
    const dotsOf = (encoded: Uint8Array | undefined): string => decodeObject(encoded!).entries.map((entry) => `${entry.actor}:${entry.counter}`).join(',');
    written(await kv.put('ns', key, Buffer.from('1')));
    failNext = true;
    let issuedDots = '';
    const failed = await kv.put('ns', key, Buffer.from('2'), { context: 'current', onIssued: (outcome) => (issuedDots = dotsOf(outcome.encoded)) });
    assert.equal(failed.ok, false);
    assert.equal(issuedDots, 'node-a:2', 'the failed write had given dot node-a:2 (a coordinator replicates it at once)');
    assert.equal(kv.droppedUnderActor, true, 'an actor that gave a dot away is not kept across a restart');
    const next = written(await kv.put('ns', key, Buffer.from('3'), { context: 'current' }));
    assert.deepEqual(renewals, ['renewed']);
    // The new value's dot is the new actor's first; node-a:2 stays as history only.
    assert.equal(dotsOf(next.encoded), 'node-a:2,node-a~1:1', 'no dot of node-a given again');
    assert.deepEqual(decodeObject(next.encoded!).entries.filter((entry) => entry.values.length > 0).map((entry) => entry.actor), ['node-a~1']);
  });

  it('kv: after a reap, a key back from another replica without this actor\'s history still gets dots past the reaped ones', async () => {
    const kv = service();
    const dotsOf = (encoded: Uint8Array | undefined): string => decodeObject(encoded!).entries.map((entry) => `${entry.actor}:${entry.counter}`).join(',');
    written(await kv.put('ns', key, Buffer.from('1')));
    const deleted = written(await kv.delete('ns', key, { context: 'current' }));
    const reaped = await kv.reapTombstone(storageKey('ns', key), objectVersionHash(deleted.encoded!));
    assert.ok(reaped.ok && reaped.value);
    // Another replica reaped too and took a new write, which reaches this node by a merge.
    const elsewhere = new KvService(new MemoryEngine(), { actor: 'node-b', clock: new SystemClock(), limits });
    const fresh = written(await elsewhere.put('ns', key, Buffer.from('from b')));
    assert.ok((await kv.mergeObject('ns', key, fresh.encoded!)).ok);
    const read = await kv.get('ns', key);
    assert.ok(read.ok && read.value !== undefined);
    const next = written(await kv.put('ns', key, Buffer.from('2'), { context: read.value.context }));
    assert.equal(dotsOf(next.encoded), 'node-a:3,node-b:1', 'not node-a:1, which the reaped history gave before');
    assert.deepEqual(text(await kv.get('ns', key)), ['2']);
  });
});
