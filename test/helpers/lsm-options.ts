import type { LsmOptions } from '../../src/storage/lsm/lsm-engine.js';

/** LSM options under which a handful of writes flush, compact and reach level 2 and deeper. */
export const tinyLsmOptions: Partial<LsmOptions> = {
  memtableSizeBytes: 2048,
  tableBytesTarget: 256,
  level0CompactionTrigger: 2,
  level0StopWritesTrigger: 6,
  level1BytesMax: 1024,
  levelSizeMultiplier: 2,
  blockBytes: 1024,
  compactionSliceEntries: 3,
};
