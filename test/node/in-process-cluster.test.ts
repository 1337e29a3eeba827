import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RingkvNode } from '../../src/node/ringkv-node.js';
import { withInProcessCluster } from '../helpers/in-process-cluster.js';

// The node runtime takes its network from its world: the seam the simulator (issue 6) will use.
describe('node: a cluster in one process on the in-memory network', () => {
  it('node: three nodes on createMemoryNetwork join, replicate and read each other (N=3 R=2 W=2)', async () => {
    await withCluster(async ([a, b, c]) => {
      const written = await a.put('ns', Buffer.from('k'), Buffer.from('v'));
      assert.ok(written.ok);
      for (const store of [b, c]) {
        const read = await store.getNewest('ns', Buffer.from('k'), { r: 3 });
        assert.ok(read.ok, read.ok ? '' : read.message);
        assert.equal(Buffer.from(read.value ?? []).toString(), 'v');
      }
    });
  });

  it('node: a coordinated delete with a context removes what that read saw and keeps a write it did not see', async () => {
    // Found by the simulator (issue 6): the coordinator dropped the client's context and deleted
    // whatever a quorum held, a concurrent write the client never read included.
    await withCluster(async ([a, b, c]) => {
      const key = Buffer.from('deleted');
      assert.ok((await a.put('ns', key, Buffer.from('seen'))).ok);
      const read = await b.get('ns', key, { r: 3 });
      assert.ok(read.ok && read.value !== undefined);
      assert.ok((await c.put('ns', key, Buffer.from('unseen'))).ok); // blind: concurrent with the read
      const deleted = await b.delete('ns', key, { context: read.value.context, w: 3 });
      assert.ok(deleted.ok, deleted.ok ? '' : deleted.message);
      const after = await a.get('ns', key, { r: 3 });
      assert.ok(after.ok);
      assert.deepEqual(after.value?.siblings.map((sibling) => Buffer.from(sibling.value ?? []).toString()), ['unseen']);
    });
  });
});

type Store = RingkvNode['cluster']['store'];

async function withCluster(body: (stores: [Store, Store, Store]) => Promise<void>): Promise<void> {
  await withInProcessCluster({}, async (nodes) => body(nodes.map((node) => node.cluster.store) as [Store, Store, Store]));
}
