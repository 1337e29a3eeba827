import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCode, RingkvError } from '../core/errors.js';
import type { BatchOperation, Engine, EngineEntry, ScanRange } from './engine.js';

/**
 * The one suite every Engine implementation passes (STYLE.md: Level/abstract-level). Each test
 * opens a fresh engine through `openEngine` and closes it. Results are always awaited, so the
 * suite holds for engines whose point operations return plain values and for those that return
 * Promises. Scenario names read `engine conformance (LABEL): area: situation`.
 */
export interface ConformanceOptions {
  /**
   * `exact` (default): stats().keyCount is the number of live keys. `upper-bound`: it is at
   * least that (an LSM engine counts each table's entries, so a key in two tables counts twice).
   */
  readonly keyCount?: 'exact' | 'upper-bound';
}

/** How a stats figure is checked against the oracle's. */
interface StatsLaw {
  keyCount(actual: number, expected: number): void;
}

export function engineConformanceSuite(label: string, openEngine: () => Promise<Engine>, options: ConformanceOptions = {}): void {
  const law: StatsLaw =
    options.keyCount === 'upper-bound'
      ? { keyCount: (actual, expected) => assert.ok(Number.isSafeInteger(actual) && actual >= expected, `keyCount ${actual} must be >= the ${expected} live keys`) }
      : { keyCount: (actual, expected) => assert.equal(actual, expected) };
  const scenario = (area: string, situation: string, body: (engine: Engine) => Promise<void>): void => {
    it(`engine conformance (${label}): ${area}: ${situation}`, async () => {
      const engine = await openEngine();
      try {
        await body(engine);
      } finally {
        await engine.close();
      }
    });
  };

  describe(`engine conformance (${label})`, () => {
    pointScenarios(scenario, law);
    keyOrderScenarios(scenario, law);
    batchScenarios(scenario, law);
    deleteRangeScenarios(scenario, law);
    scanScenarios(scenario);
    snapshotScenarios(scenario);
    statsAndCloseScenarios(scenario, label, openEngine, law);
    modelScenarios(label, openEngine, law);
  });
}

type Scenario = (area: string, situation: string, body: (engine: Engine) => Promise<void>) => void;

function pointScenarios(scenario: Scenario, law: StatsLaw): void {
  scenario('get', 'a missing key returns undefined', async (engine) => {
    assert.equal(await engine.get(text('absent')), undefined);
    await engine.put(text('present'), text('v'));
    assert.equal(await engine.get(text('absent')), undefined);
    assert.equal(await engine.get(text('presen')), undefined, 'a prefix of a stored key is not that key');
  });

  scenario('put', 'a value put is read back byte for byte', async (engine) => {
    await engine.put(text('k'), bytes(0x00, 0x01, 0xfe, 0xff));
    assert.equal(hexOf(await engine.get(text('k'))), '0001feff');
  });

  scenario('put', 'a write is visible to reads as soon as the call returns, before its Promise settles', async (engine) => {
    const putting = engine.put(text('k'), text('v'));
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('v')));
    const deleting = engine.delete(text('k'));
    assert.equal(await engine.get(text('k')), undefined);
    const batching = engine.batch([put('a', '1'), put('b', '2')]);
    assert.deepEqual(await scanHex(engine), [[hex(text('a')), hex(text('1'))], [hex(text('b')), hex(text('2'))]]);
    const ranging = engine.deleteRange({ gte: text('a'), lt: text('b') });
    assert.equal(await engine.get(text('a')), undefined);
    await Promise.all([putting, deleting, batching, ranging]);
  });

  scenario('put', 'a second put replaces the value', async (engine) => {
    await engine.put(text('k'), text('first'));
    await engine.put(text('k'), text('second, longer'));
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('second, longer')));
    await engine.put(text('k'), text('3'));
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('3')));
    law.keyCount(engine.stats().keyCount, 1);
  });

  scenario('put', 'an empty value is stored and differs from an absent key', async (engine) => {
    await engine.put(text('k'), new Uint8Array(0));
    const value = await engine.get(text('k'));
    assert.ok(value !== undefined, 'an empty value must not read as absent');
    assert.equal(value.length, 0);
    assert.deepEqual(await scanHex(engine), [[hex(text('k')), '']]);
  });

  scenario('put', 'mutating the caller buffers after put changes nothing stored', async (engine) => {
    const key = text('key-1');
    const value = text('value-1');
    await engine.put(key, value);
    key.fill(0x7a);
    value.fill(0x7a);
    assert.equal(hexOf(await engine.get(text('key-1'))), hex(text('value-1')));
    assert.equal(await engine.get(key), undefined, 'the mutated key must not be stored');
    assert.deepEqual(await scanHex(engine), [[hex(text('key-1')), hex(text('value-1'))]]);
  });

  scenario('put', 'a value read earlier is unchanged by later writes to the key', async (engine) => {
    await engine.put(text('k'), text('old'));
    const earlier = await engine.get(text('k'));
    await engine.put(text('k'), text('new'));
    await engine.delete(text('k'));
    assert.equal(hexOf(earlier), hex(text('old')));
  });

  scenario('delete', 'a deleted key reads as absent and other keys stay', async (engine) => {
    await engine.put(text('a'), text('1'));
    await engine.put(text('b'), text('2'));
    await engine.delete(text('a'));
    assert.equal(await engine.get(text('a')), undefined);
    assert.equal(hexOf(await engine.get(text('b'))), hex(text('2')));
    assert.deepEqual(await scanHex(engine), [[hex(text('b')), hex(text('2'))]]);
  });

  scenario('delete', 'deleting a missing key is a no-op', async (engine) => {
    await engine.put(text('b'), text('2'));
    await engine.delete(text('a'));
    await engine.delete(text('a'));
    assert.equal(await engine.get(text('a')), undefined);
    assert.deepEqual(await scanHex(engine), [[hex(text('b')), hex(text('2'))]]);
    law.keyCount(engine.stats().keyCount, 1);
  });

  scenario('delete', 'a key put again after delete is back with the new value', async (engine) => {
    await engine.put(text('k'), text('1'));
    await engine.delete(text('k'));
    await engine.put(text('k'), text('2'));
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('2')));
    law.keyCount(engine.stats().keyCount, 1);
  });
}

function keyOrderScenarios(scenario: Scenario, law: StatsLaw): void {
  // In byte order: shorter first on a common prefix, bytes unsigned (0x7f < 0x80).
  const ordered = [
    bytes(0x00),
    bytes(0x00, 0x00),
    bytes(0x00, 0xff),
    bytes(0x01),
    bytes(0x01, 0x00),
    bytes(0x01, 0x00, 0x00),
    bytes(0x01, 0xff),
    bytes(0x02),
    bytes(0x7f),
    bytes(0x7f, 0xff),
    bytes(0x80),
    bytes(0xc3, 0xa9),
    bytes(0xfe, 0xff, 0xff),
    bytes(0xff),
    bytes(0xff, 0x00),
    bytes(0xff, 0xff),
  ];

  scenario('keys', 'binary keys with 0x00 and 0xff bytes are distinct keys', async (engine) => {
    for (const [index, key] of ordered.entries()) await engine.put(key, bytes(index));
    for (const [index, key] of ordered.entries()) assert.equal(hexOf(await engine.get(key)), hex(bytes(index)));
    law.keyCount(engine.stats().keyCount, ordered.length);
  });

  scenario('keys', 'scan order is unsigned byte order with prefixes first (inserted shuffled)', async (engine) => {
    const shuffled = [...ordered.keys()].sort((left, right) => ((left * 7) % 11) - ((right * 7) % 11) || left - right);
    for (const index of shuffled) await engine.put(ordered[index]!, bytes(index));
    assert.deepEqual(
      (await scanHex(engine)).map(([key]) => key),
      ordered.map(hex),
    );
    assert.deepEqual(
      (await scanHex(engine, { reverse: true })).map(([key]) => key),
      ordered.map(hex).reverse(),
    );
  });

  scenario('keys', 'a Buffer and a Uint8Array with the same bytes are the same key', async (engine) => {
    const high = [0x00, 0x7f, 0x80, 0xc3, 0xa9, 0xff];
    await engine.put(Buffer.from(high), text('from a Buffer'));
    assert.equal(hexOf(await engine.get(Uint8Array.from(high))), hex(text('from a Buffer')));
    await engine.put(Uint8Array.from(high), text('from a Uint8Array'));
    assert.equal(hexOf(await engine.get(Buffer.from(high))), hex(text('from a Uint8Array')));
    await engine.put(Buffer.from([0x80]), text('x'));
    await engine.put(Buffer.from([0x7f, 0xff]), text('y'));
    assert.deepEqual((await scanHex(engine)).map(([key]) => key), ['007f80c3a9ff', '7fff', '80']);
    await engine.delete(Buffer.from(high));
    assert.equal(await engine.get(Uint8Array.from(high)), undefined);
    law.keyCount(engine.stats().keyCount, 2);
  });

  scenario('keys', 'a key given as a subarray of a larger buffer is just its bytes', async (engine) => {
    const big = new Uint8Array(4096).fill(0x61);
    big.set(text('key'), 1000);
    await engine.put(big.subarray(1000, 1003), big.subarray(1003, 1006));
    assert.equal(hexOf(await engine.get(text('key'))), hex(text('aaa')));
    assert.deepEqual(await scanHex(engine), [[hex(text('key')), hex(text('aaa'))]]);
  });
}

function deleteRangeScenarios(scenario: Scenario, law: StatsLaw): void {
  const fill = async (engine: Engine, keys: readonly string[]): Promise<void> => {
    for (const key of keys) await engine.put(text(key), text(`v-${key}`));
  };
  const keysOf = async (engine: Engine): Promise<string[]> => (await scanHex(engine)).map(([key]) => Buffer.from(key, 'hex').toString());

  scenario('deleteRange', 'deletes exactly the keys in [gte, lt), bounds included and excluded as named', async (engine) => {
    await fill(engine, ['a', 'b', 'ba', 'c', 'd']);
    await engine.deleteRange({ gte: text('b'), lt: text('c') });
    assert.deepEqual(await keysOf(engine), ['a', 'c', 'd']);
    assert.equal(await engine.get(text('ba')), undefined);
    assert.equal(hexOf(await engine.get(text('c'))), hex(text('v-c')));
    law.keyCount(engine.stats().keyCount, 3);
  });

  scenario('deleteRange', 'open bounds reach the ends; an empty or inverted range deletes nothing', async (engine) => {
    await fill(engine, ['a', 'b', 'c', 'd']);
    await engine.deleteRange({ gte: text('c'), lt: text('c') });
    await engine.deleteRange({ gte: text('d'), lt: text('a') });
    assert.deepEqual(await keysOf(engine), ['a', 'b', 'c', 'd']);
    await engine.deleteRange({ lt: text('b') });
    assert.deepEqual(await keysOf(engine), ['b', 'c', 'd']);
    await engine.deleteRange({ gte: text('c') });
    assert.deepEqual(await keysOf(engine), ['b']);
    await engine.deleteRange({});
    assert.deepEqual(await keysOf(engine), []);
  });

  scenario('deleteRange', 'a key written after the range deletion is there; one written before is not', async (engine) => {
    await fill(engine, ['k1', 'k2']);
    await engine.deleteRange({ gte: text('k'), lt: text('l') });
    await engine.put(text('k2'), text('again'));
    assert.equal(await engine.get(text('k1')), undefined);
    assert.equal(hexOf(await engine.get(text('k2'))), hex(text('again')));
    assert.deepEqual(await keysOf(engine), ['k2']);
  });

  scenario('deleteRange', 'a scan started before the range deletion still sees the deleted keys', async (engine) => {
    await fill(engine, ['a', 'b', 'c']);
    const iterator = engine.scan()[Symbol.asyncIterator]();
    const first = await iterator.next();
    await engine.deleteRange({ gte: text('a') });
    const rest = await drainHex(iterator);
    assert.deepEqual([first.done === true ? [] : [entryHex(first.value)], rest].flat().map(([key]) => Buffer.from(key, 'hex').toString()), ['a', 'b', 'c']);
    assert.deepEqual(await keysOf(engine), []);
  });
}

function batchScenarios(scenario: Scenario, law: StatsLaw): void {
  scenario('batch', 'put then delete of one key in a batch leaves it absent', async (engine) => {
    await engine.batch([put('k', 'v'), del('k')]);
    assert.equal(await engine.get(text('k')), undefined);
    law.keyCount(engine.stats().keyCount, 0);
  });

  scenario('batch', 'delete then put of one key in a batch leaves it present', async (engine) => {
    await engine.put(text('k'), text('old'));
    await engine.batch([del('k'), put('k', 'new')]);
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('new')));
    law.keyCount(engine.stats().keyCount, 1);
  });

  scenario('batch', 'operations apply in order and the last write to a key wins', async (engine) => {
    await engine.put(text('gone'), text('x'));
    await engine.batch([put('a', '1'), put('b', '2'), put('a', '3'), del('gone'), put('c', '4'), del('b')]);
    assert.deepEqual(await scanHex(engine), [
      [hex(text('a')), hex(text('3'))],
      [hex(text('c')), hex(text('4'))],
    ]);
  });

  scenario('batch', 'an empty batch changes nothing', async (engine) => {
    await engine.put(text('a'), text('1'));
    await engine.batch([]);
    assert.deepEqual(await scanHex(engine), [[hex(text('a')), hex(text('1'))]]);
  });

  scenario('batch', 'mutating batch buffers afterwards changes nothing stored', async (engine) => {
    const key = text('k');
    const value = text('v');
    await engine.batch([{ type: 'put', key, value }]);
    key.fill(0);
    value.fill(0);
    assert.equal(hexOf(await engine.get(text('k'))), hex(text('v')));
  });

  scenario('batch', 'a scan started before a batch sees none of it, one after sees all', async (engine) => {
    await engine.batch([put('a', '1'), put('c', '3'), put('e', '5')]);
    const iterator = engine.scan()[Symbol.asyncIterator]();
    const first = await iterator.next();
    await engine.batch([put('b', '2'), del('c'), put('d', '4'), put('e', '55')]);
    const during = [first.done === true ? [] : [entryHex(first.value)], await drainHex(iterator)].flat();
    assert.deepEqual(during, [
      [hex(text('a')), hex(text('1'))],
      [hex(text('c')), hex(text('3'))],
      [hex(text('e')), hex(text('5'))],
    ]);
    assert.deepEqual((await scanHex(engine)).map(([key]) => key), ['a', 'b', 'd', 'e'].map((key) => hex(text(key))));
  });
}

function scanScenarios(scenario: Scenario): void {
  const keys = ['a', 'b', 'c', 'd', 'e'];
  const fill = async (engine: Engine): Promise<void> => {
    for (const key of keys) await engine.put(text(key), text(`value-${key}`));
  };
  const scanKeys = async (engine: Engine, range?: ScanRange): Promise<string[]> =>
    (await scanHex(engine, range)).map(([key]) => Buffer.from(key, 'hex').toString('latin1'));

  scenario('scan', 'an empty engine yields nothing, with or without bounds', async (engine) => {
    assert.deepEqual(await scanHex(engine), []);
    assert.deepEqual(await scanHex(engine, { gte: text('a'), lt: text('z'), reverse: true, limit: 3 }), []);
  });

  scenario('scan', 'the full range yields every entry with its value in key order', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanHex(engine), keys.map((key) => [hex(text(key)), hex(text(`value-${key}`))]));
  });

  scenario('scan', 'gte is inclusive and lt is exclusive', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanKeys(engine, { gte: text('b'), lt: text('d') }), ['b', 'c']);
    assert.deepEqual(await scanKeys(engine, { gte: text('bb'), lt: text('dd') }), ['c', 'd']);
    assert.deepEqual(await scanKeys(engine, { gte: text('c') }), ['c', 'd', 'e']);
    assert.deepEqual(await scanKeys(engine, { lt: text('c') }), ['a', 'b']);
  });

  scenario('scan', 'an empty or inverted range yields nothing', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanKeys(engine, { gte: text('c'), lt: text('c') }), []);
    assert.deepEqual(await scanKeys(engine, { gte: text('d'), lt: text('b') }), []);
    assert.deepEqual(await scanKeys(engine, { gte: text('d'), lt: text('b'), reverse: true }), []);
    assert.deepEqual(await scanKeys(engine, { gte: text('f') }), []);
  });

  scenario('scan', 'bounds between a key and its extensions (0x01 < 0x01 0x00 < 0x02)', async (engine) => {
    for (const key of [bytes(0x01), bytes(0x01, 0x00), bytes(0x01, 0x00, 0x00), bytes(0x02)]) await engine.put(key, bytes(0));
    const keysIn = async (range: ScanRange): Promise<string[]> => (await scanHex(engine, range)).map(([key]) => key);
    assert.deepEqual(await keysIn({ gte: bytes(0x01), lt: bytes(0x01, 0x00) }), ['01']);
    assert.deepEqual(await keysIn({ gte: bytes(0x01, 0x00), lt: bytes(0x02) }), ['0100', '010000']);
    assert.deepEqual(await keysIn({ gte: bytes(0x01, 0x00), lt: bytes(0x01, 0x00, 0x00) }), ['0100']);
    assert.deepEqual(await keysIn({ gte: bytes(0x01, 0x00), reverse: true }), ['02', '010000', '0100']);
  });

  scenario('scan', 'limit stops after that many entries', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanKeys(engine, { limit: 2 }), ['a', 'b']);
    assert.deepEqual(await scanKeys(engine, { limit: 0 }), []);
    assert.deepEqual(await scanKeys(engine, { limit: 99 }), keys);
    assert.deepEqual(await scanKeys(engine, { gte: text('b'), limit: 2 }), ['b', 'c']);
  });

  scenario('scan', 'reverse yields descending key order', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanKeys(engine, { reverse: true }), [...keys].reverse());
  });

  scenario('scan', 'reverse with bounds and limit starts below lt and stops at gte', async (engine) => {
    await fill(engine);
    assert.deepEqual(await scanKeys(engine, { gte: text('b'), lt: text('e'), reverse: true }), ['d', 'c', 'b']);
    assert.deepEqual(await scanKeys(engine, { gte: text('b'), lt: text('e'), reverse: true, limit: 2 }), ['d', 'c']);
    assert.deepEqual(await scanKeys(engine, { lt: text('cc'), reverse: true, limit: 1 }), ['c']);
    assert.deepEqual(await scanKeys(engine, { gte: text('d'), reverse: true }), ['e', 'd']);
  });

  scenario('scan', 'leaving a scan early leaves the engine usable and other scans whole', async (engine) => {
    await fill(engine);
    for await (const entry of engine.scan()) {
      assert.equal(hex(entry.key), hex(text('a')));
      break;
    }
    await engine.put(text('f'), text('value-f'));
    assert.deepEqual(await scanKeys(engine), [...keys, 'f']);
  });
}

function snapshotScenarios(scenario: Scenario): void {
  scenario('scan snapshot', 'inserts, deletes and overwrites during a scan are not seen', async (engine) => {
    for (const key of ['b', 'd', 'f', 'h']) await engine.put(text(key), text(`${key}0`));
    const iterator = engine.scan()[Symbol.asyncIterator]();
    const seen: [string, string][] = [];
    const first = await iterator.next();
    assert.ok(first.done !== true, 'the scan has entries');
    seen.push(entryHex(first.value));
    await engine.put(text('a'), text('behind'));
    await engine.put(text('c'), text('ahead'));
    await engine.put(text('c'), text('ahead again'));
    await engine.delete(text('d'));
    await engine.put(text('d'), text('d2'));
    await engine.delete(text('d'));
    await engine.put(text('f'), text('f1'));
    await engine.put(text('f'), text('f2'));
    await engine.delete(text('h'));
    await engine.put(text('h'), text('h1'));
    await engine.put(text('z'), text('at the end'));
    seen.push(...(await drainHex(iterator)));
    assert.deepEqual(seen, ['b', 'd', 'f', 'h'].map((key) => [hex(text(key)), hex(text(`${key}0`))]));
    assert.deepEqual(
      (await scanHex(engine)).map(([key]) => Buffer.from(key, 'hex').toString('latin1')),
      ['a', 'b', 'c', 'f', 'h', 'z'],
    );
    assert.equal(hexOf(await engine.get(text('f'))), hex(text('f2')));
  });

  scenario('scan snapshot', 'a reverse bounded scan ignores writes made while it runs', async (engine) => {
    for (const key of ['b', 'd', 'f', 'h']) await engine.put(text(key), text(`${key}0`));
    const iterator = engine.scan({ gte: text('c'), lt: text('h'), reverse: true })[Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.done === true ? undefined : hex(first.value.key), hex(text('f')));
    await engine.put(text('e'), text('new'));
    await engine.delete(text('d'));
    await engine.put(text('c'), text('new'));
    const rest = await drainHex(iterator);
    assert.deepEqual(rest, [[hex(text('d')), hex(text('d0'))]]);
  });

  scenario('scan snapshot', 'a long scan with a write between every step sees its start state', async (engine) => {
    const count = 1500;
    const keyOf = (index: number): Uint8Array => text(`k${String(index).padStart(5, '0')}`);
    for (let index = 0; index < count; index += 2) await engine.put(keyOf(index), text(`v${index}`));
    let seen = 0;
    let step = 0;
    for await (const entry of engine.scan()) {
      assert.equal(hex(entry.key), hex(keyOf(seen * 2)));
      assert.equal(hex(entry.value), hex(text(`v${seen * 2}`)));
      seen++;
      // Inserts, deletes and overwrites ahead of the scan and behind it, all after it started.
      await engine.put(keyOf((step * 7 + 1) % count), text('inserted'));
      await engine.delete(keyOf((step * 6 + 4) % count));
      await engine.put(keyOf((step * 10 + 2) % count), text('overwritten'));
      step++;
    }
    assert.equal(seen, count / 2);
  });

  scenario('scan snapshot', 'two interleaved scans each see their own start state', async (engine) => {
    await engine.batch([put('a', '1'), put('b', '2'), put('c', '3')]);
    const early = engine.scan()[Symbol.asyncIterator]();
    const earlyFirst = await early.next();
    await engine.delete(text('b'));
    const late = engine.scan()[Symbol.asyncIterator]();
    const lateFirst = await late.next();
    await engine.put(text('b'), text('22'));
    await engine.delete(text('c'));
    const earlyAll = [earlyFirst.done === true ? [] : [entryHex(earlyFirst.value)], await drainHex(early)].flat();
    const lateAll = [lateFirst.done === true ? [] : [entryHex(lateFirst.value)], await drainHex(late)].flat();
    assert.deepEqual(earlyAll.map(([key, value]) => `${key}=${value}`), ['61=31', '62=32', '63=33']);
    assert.deepEqual(lateAll.map(([key, value]) => `${key}=${value}`), ['61=31', '63=33']);
  });
}

function statsAndCloseScenarios(scenario: Scenario, label: string, openEngine: () => Promise<Engine>, law: StatsLaw): void {
  scenario('stats', 'an empty engine has no keys and no bytes', async (engine) => {
    const stats = engine.stats();
    law.keyCount(stats.keyCount, 0);
    assert.equal(stats.sizeBytes, 0);
  });

  scenario('stats', 'keyCount follows puts, overwrites and deletes; sizeBytes grows with data', async (engine) => {
    await engine.put(text('a'), new Uint8Array(1000).fill(1));
    await engine.put(text('b'), text('2'));
    await engine.put(text('a'), new Uint8Array(2000).fill(3));
    await engine.put(text('c'), text('3'));
    await engine.delete(text('c'));
    await engine.delete(text('missing'));
    const stats = engine.stats();
    law.keyCount(stats.keyCount, 2);
    assert.ok(stats.sizeBytes >= 2000, `sizeBytes ${stats.sizeBytes} must count the 2000-byte value`);
    await engine.batch([del('a'), del('b')]);
    law.keyCount(engine.stats().keyCount, 0);
  });

  scenario('close', 'close is idempotent', async (engine) => {
    await engine.put(text('a'), text('1'));
    await engine.close();
    await engine.close();
    await assert.rejects(async () => engine.get(text('a')), isEngineClosed);
  });

  it(`engine conformance (${label}): close: every operation after close fails with ENGINE_CLOSED`, async () => {
    const engine = await openEngine();
    await engine.put(text('a'), text('1'));
    await engine.close();
    await assert.rejects(async () => engine.get(text('a')), isEngineClosed);
    await assert.rejects(async () => engine.put(text('a'), text('2')), isEngineClosed);
    await assert.rejects(async () => engine.delete(text('a')), isEngineClosed);
    await assert.rejects(async () => engine.batch([put('b', '2')]), isEngineClosed);
    await assert.rejects(async () => engine.stats(), isEngineClosed);
    await assert.rejects(async () => {
      for await (const entry of engine.scan()) assert.fail(`scan after close yielded ${hex(entry.key)}`);
    }, isEngineClosed);
  });
}

/** The randomized model test: the engine against a sorted array of entries. */
function modelScenarios(label: string, openEngine: () => Promise<Engine>, law: StatsLaw): void {
  // Few distinct bytes and short keys, so commands keep hitting the same keys and prefixes.
  const keyArbitrary = fc
    .array(fc.constantFrom(0x00, 0x01, 0x7f, 0x80, 0xff), { minLength: 1, maxLength: 3 })
    .chain((values) => fc.constantFrom(Uint8Array.from(values), Buffer.from(values)));
  const valueArbitrary = fc.uint8Array({ maxLength: 4 });
  const operationArbitrary: fc.Arbitrary<BatchOperation> = fc.oneof(
    fc.record({ type: fc.constant('put' as const), key: keyArbitrary, value: valueArbitrary }),
    fc.record({ type: fc.constant('delete' as const), key: keyArbitrary }),
  );
  // Each bound and the limit present half the time; bounds mostly in order (inverted ranges
  // have their own scenario) so that scans usually have entries to read.
  const rangeArbitrary: fc.Arbitrary<ScanRange> = fc
    .tuple(
      fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
      fc.option(keyArbitrary, { nil: undefined, freq: 2 }),
      fc.option(fc.nat({ max: 40 }), { nil: undefined, freq: 2 }),
      fc.boolean(),
    )
    .map(([first, second, limit, reverse]) => {
      const inOrder = first === undefined || second === undefined || compareBytes(first, second) <= 0;
      const gte = inOrder ? first : second;
      const lt = inOrder ? second : first;
      return {
        ...(gte === undefined ? {} : { gte }),
        ...(lt === undefined ? {} : { lt }),
        ...(limit === undefined ? {} : { limit }),
        reverse,
      };
    });
  const commandArbitrary: fc.Arbitrary<ModelCommand> = fc.oneof(
    { arbitrary: operationArbitrary.map((operation) => ({ kind: 'write' as const, operation })), weight: 6 },
    { arbitrary: keyArbitrary.map((key) => ({ kind: 'get' as const, key })), weight: 2 },
    { arbitrary: fc.array(operationArbitrary, { maxLength: 6 }).map((operations) => ({ kind: 'batch' as const, operations })), weight: 2 },
    { arbitrary: rangeArbitrary.map((range) => ({ kind: 'scan' as const, range })), weight: 2 },
    { arbitrary: rangeArbitrary.map((range) => ({ kind: 'deleteRange' as const, range })), weight: 1 },
    {
      arbitrary: fc.record({
        kind: fc.constant('scanDuringWrites' as const),
        range: rangeArbitrary,
        readBefore: fc.integer({ min: 1, max: 4 }),
        writes: fc.array(operationArbitrary, { maxLength: 10 }),
      }),
      weight: 2,
    },
  );

  it(`engine conformance (${label}): model: random commands match a sorted-array oracle`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(commandArbitrary, { maxLength: 60 }), async (commands) => {
        const engine = await openEngine();
        try {
          const oracle = new SortedArrayOracle();
          for (const command of commands) await runModelCommand(engine, oracle, command);
          assert.deepEqual(await scanHex(engine), oracle.scan({}).map(entryHex));
          law.keyCount(engine.stats().keyCount, oracle.size);
        } finally {
          await engine.close();
        }
      }),
      { numRuns: 150 },
    );
  });
}

type ModelCommand =
  | { readonly kind: 'write'; readonly operation: BatchOperation }
  | { readonly kind: 'get'; readonly key: Uint8Array }
  | { readonly kind: 'batch'; readonly operations: readonly BatchOperation[] }
  | { readonly kind: 'scan'; readonly range: ScanRange }
  | { readonly kind: 'deleteRange'; readonly range: ScanRange }
  | {
      readonly kind: 'scanDuringWrites';
      readonly range: ScanRange;
      readonly readBefore: number;
      readonly writes: readonly BatchOperation[];
    };

async function runModelCommand(engine: Engine, oracle: SortedArrayOracle, command: ModelCommand): Promise<void> {
  switch (command.kind) {
    case 'write':
      if (command.operation.type === 'put') await engine.put(command.operation.key, command.operation.value);
      else await engine.delete(command.operation.key);
      oracle.apply(command.operation);
      return;
    case 'get':
      assert.equal(hexOf(await engine.get(command.key)), hexOf(oracle.get(command.key)));
      return;
    case 'batch':
      await engine.batch(command.operations);
      for (const operation of command.operations) oracle.apply(operation);
      return;
    case 'scan':
      assert.deepEqual(await scanHex(engine, command.range), oracle.scan(command.range).map(entryHex));
      return;
    case 'deleteRange': {
      const range = { ...(command.range.gte === undefined ? {} : { gte: command.range.gte }), ...(command.range.lt === undefined ? {} : { lt: command.range.lt }) };
      await engine.deleteRange(range);
      for (const entry of oracle.scan(range)) oracle.apply({ type: 'delete', key: entry.key });
      return;
    }
    case 'scanDuringWrites': {
      const expected = oracle.scan(command.range).map(entryHex);
      const iterator = engine.scan(command.range)[Symbol.asyncIterator]();
      const seen: [string, string][] = [];
      for (let index = 0; index < command.readBefore; index++) {
        const result = await iterator.next();
        if (result.done === true) break;
        seen.push(entryHex(result.value));
      }
      for (const operation of command.writes) {
        if (operation.type === 'put') await engine.put(operation.key, operation.value);
        else await engine.delete(operation.key);
        oracle.apply(operation);
      }
      seen.push(...(await drainHex(iterator)));
      assert.deepEqual(seen, expected);
      return;
    }
  }
}

/** The naive model: entries in an array kept sorted by an independent byte comparison. */
class SortedArrayOracle {
  private readonly entries: EngineEntry[] = [];

  get size(): number {
    return this.entries.length;
  }

  get(key: Uint8Array): Uint8Array | undefined {
    return this.entries.find((entry) => compareBytes(entry.key, key) === 0)?.value;
  }

  apply(operation: BatchOperation): void {
    const index = this.entries.findIndex((entry) => compareBytes(entry.key, operation.key) >= 0);
    const found = index !== -1 && compareBytes(this.entries[index]!.key, operation.key) === 0;
    if (operation.type === 'delete') {
      if (found) this.entries.splice(index, 1);
      return;
    }
    const entry = { key: operation.key.slice(), value: operation.value.slice() };
    if (found) this.entries[index] = entry;
    else if (index === -1) this.entries.push(entry);
    else this.entries.splice(index, 0, entry);
  }

  scan(range: ScanRange): EngineEntry[] {
    const { gte, lt } = range;
    const within = this.entries.filter(
      (entry) => (gte === undefined || compareBytes(entry.key, gte) >= 0) && (lt === undefined || compareBytes(entry.key, lt) < 0),
    );
    if (range.reverse === true) within.reverse();
    return range.limit === undefined ? within : within.slice(0, range.limit);
  }
}

function compareBytes(left: Uint8Array, right: Uint8Array): number {
  const length = Math.min(left.length, right.length);
  for (let index = 0; index < length; index++) {
    if (left[index] !== right[index]) return left[index]! - right[index]!;
  }
  return left.length - right.length;
}

function isEngineClosed(error: unknown): boolean {
  assert.ok(error instanceof RingkvError, `expected a RingkvError, got ${String(error)}`);
  assert.equal(error.code, ErrorCode.engineClosed);
  return true;
}

function text(value: string): Uint8Array {
  return Uint8Array.from(Buffer.from(value, 'latin1'));
}

function bytes(...values: number[]): Uint8Array {
  return Uint8Array.from(values);
}

function put(key: string, value: string): BatchOperation {
  return { type: 'put', key: text(key), value: text(value) };
}

function del(key: string): BatchOperation {
  return { type: 'delete', key: text(key) };
}

function hex(value: Uint8Array): string {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
}

/** Hex of a possibly absent value: `undefined` stays distinct from an empty value (''). */
function hexOf(value: Uint8Array | undefined): string | undefined {
  return value === undefined ? undefined : hex(value);
}

function entryHex(entry: EngineEntry): [string, string] {
  return [hex(entry.key), hex(entry.value)];
}

async function scanHex(engine: Engine, range?: ScanRange): Promise<[string, string][]> {
  const entries: [string, string][] = [];
  for await (const entry of engine.scan(range)) entries.push(entryHex(entry));
  return entries;
}

async function drainHex(iterator: AsyncIterator<EngineEntry>): Promise<[string, string][]> {
  const entries: [string, string][] = [];
  for (let result = await iterator.next(); result.done !== true; result = await iterator.next()) {
    entries.push(entryHex(result.value));
  }
  return entries;
}
