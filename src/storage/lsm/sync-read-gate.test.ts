import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock } from '../../world/clock.js';
import { SyncReadGate } from './sync-read-gate.js';

/** A clock the test moves by hand. */
class HandClock implements Clock {
  now = 0;
  nowMs(): number {
    return this.now;
  }
  wallMs(): number {
    return this.now;
  }
  setTimer(): { cancel(): void } {
    throw new Error('not used');
  }
}

/** One synchronous read through the gate that takes `tookMs`; false when the gate sent it to the pool. */
function read(gate: SyncReadGate, clock: HandClock, tookMs: number): boolean {
  const started = gate.begin();
  if (started === undefined) return false;
  clock.now += tookMs;
  gate.finished(started);
  return true;
}

describe('sync read gate', () => {
  it('sync read gate: fast reads stay synchronous; one slow read now and then does not switch', () => {
    const clock = new HandClock();
    const gate = new SyncReadGate(clock, 0.25, 1000, 16, 3);
    for (let index = 0; index < 1000; index++) assert.ok(read(gate, clock, index % 20 === 0 ? 5 : 0.005), `read ${index} stays synchronous`);
    assert.equal(gate.slowReads, 50);
    assert.equal(gate.switchesToPool, 0);
  });

  it('sync read gate: three slow reads among the last sixteen send reads to the pool for the hold time, then it tries again', () => {
    const clock = new HandClock();
    const gate = new SyncReadGate(clock, 0.25, 1000, 16, 3);
    assert.ok(read(gate, clock, 4));
    for (let index = 0; index < 10; index++) assert.ok(read(gate, clock, 0.01));
    assert.ok(read(gate, clock, 4));
    assert.ok(read(gate, clock, 4), 'the third slow read still ran synchronously');
    assert.equal(gate.switchesToPool, 1);
    assert.equal(read(gate, clock, 0.01), false, 'the next read goes to the pool');
    clock.now += 999;
    assert.equal(gate.begin(), undefined, 'still holding');
    clock.now += 1;
    assert.ok(read(gate, clock, 4), 'after the hold a read is tried synchronously again');
    assert.ok(read(gate, clock, 4));
    assert.ok(read(gate, clock, 4));
    assert.equal(gate.switchesToPool, 2, 'a disk that is still slow switches again after three slow reads');
    assert.equal(gate.begin(), undefined);
  });

  it('sync read gate: slow reads further apart than the window never switch', () => {
    const clock = new HandClock();
    const gate = new SyncReadGate(clock, 0.25, 1000, 16, 3);
    for (let index = 0; index < 400; index++) assert.ok(read(gate, clock, index % 8 === 0 ? 1 : 0.01));
    assert.equal(gate.switchesToPool, 0, 'one slow read in 8 is two in 16: under three');
  });
});
