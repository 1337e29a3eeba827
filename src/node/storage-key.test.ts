import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { keyPartition } from '../core/token.js';
import { compareKeys, parseStorageKey, partitionRange, storageKey } from './storage-key.js';

const namespaceArbitrary = fc.stringMatching(/^[A-Za-z0-9_.-]{1,20}$/);
const partitionCountArbitrary = fc.integer({ min: 3, max: 12 }).map((bits) => 2 ** bits);

function inRange(engineKey: Uint8Array, range: { gte: Uint8Array; lt?: Uint8Array }): boolean {
  return Buffer.compare(engineKey, range.gte) >= 0 && (range.lt === undefined || Buffer.compare(engineKey, range.lt) < 0);
}

describe('storage key', () => {
  it('storage key: a key lies in the range of its partition and in no other, for every Q (property)', () => {
    fc.assert(
      fc.property(namespaceArbitrary, fc.uint8Array({ maxLength: 40 }), partitionCountArbitrary, (namespace, key, partitionCount) => {
        const engineKey = storageKey(namespace, key);
        const partition = keyPartition(namespace, key, partitionCount);
        assert.ok(inRange(engineKey, partitionRange(partition, partitionCount)));
        if (partition > 0) assert.ok(!inRange(engineKey, partitionRange(partition - 1, partitionCount)));
        if (partition < partitionCount - 1) assert.ok(!inRange(engineKey, partitionRange(partition + 1, partitionCount)));
      }),
    );
  });

  it('storage key: partition ranges tile the key space in partition order', () => {
    for (const partitionCount of [8, 256, 4096]) {
      let previousEnd: Uint8Array | undefined = Buffer.alloc(0);
      for (let partition = 0; partition < partitionCount; partition++) {
        const range = partitionRange(partition, partitionCount);
        assert.ok(previousEnd !== undefined && Buffer.compare(range.gte, previousEnd) === (partition === 0 ? 1 : 0), `partition ${partition} of ${partitionCount} starts where the previous ends`);
        previousEnd = range.lt;
      }
      assert.equal(previousEnd, undefined, 'the last partition runs to the end of the key space');
    }
  });

  it('storage key: parse gives back the namespace and the key; other bytes are not storage keys (property)', () => {
    fc.assert(
      fc.property(namespaceArbitrary, fc.uint8Array({ maxLength: 40 }), (namespace, key) => {
        const parsed = parseStorageKey(storageKey(namespace, key));
        assert.equal(parsed?.namespace, namespace);
        assert.deepEqual(Buffer.from(parsed?.key ?? []), Buffer.from(key));
      }),
    );
    assert.equal(parseStorageKey(Buffer.of(1, 2)), undefined);
    assert.equal(parseStorageKey(Buffer.of(1, 2, 0)), undefined);
    assert.equal(parseStorageKey(Buffer.of(1, 2, 5, 0x61)), undefined);
  });

  it('storage key: listing order is a total order consistent with equality (property)', () => {
    fc.assert(
      fc.property(namespaceArbitrary, fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 }), (namespace, left, right) => {
        const order = compareKeys(namespace, left, right);
        assert.equal(order === 0, Buffer.compare(left, right) === 0);
        assert.ok(Math.sign(order) === -Math.sign(compareKeys(namespace, right, left)), 'antisymmetric');
      }),
    );
  });
});
