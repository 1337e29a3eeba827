import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { configurationTable, environmentVariable, resolveConfig, type ConfigSources } from './config.js';

function resolve(sources: Partial<ConfigSources>) {
  return resolveConfig({ flags: {}, environment: {}, file: undefined, ...sources });
}

test('config: defaults are the documented embedded node', () => {
  const config = resolve({});
  assert.ok(config.ok);
  assert.equal(config.value.dataDir, './data');
  assert.equal(config.value.host, '127.0.0.1');
  assert.equal(config.value.httpPort, 8098);
  assert.equal(config.value.respPort, 6380);
  assert.equal(config.value.peerPort, 7800);
  assert.equal(config.value.keyBytesMax, 1024);
  assert.equal(config.value.valueBytesMax, 1024 * 1024);
  assert.equal(config.value.nodeId, undefined);
});

test('config: flags beat environment beat file beat defaults', () => {
  const sources = {
    flags: { httpPort: '9001' },
    environment: { RINGKV_HTTP_PORT: '9002', RINGKV_RESP_PORT: '9003' },
    file: { httpPort: 9004, respPort: 9005, 'peer-port': 9006 },
  };
  const config = resolve(sources);
  assert.ok(config.ok);
  assert.equal(config.value.httpPort, 9001);
  assert.equal(config.value.respPort, 9003);
  assert.equal(config.value.peerPort, 9006);
});

test('config: an invalid value names its option and source in one line', () => {
  const cases: [Partial<ConfigSources>, RegExp][] = [
    [{ flags: { httpPort: 'abc' } }, /^invalid --http-port: .*"abc"/],
    [{ environment: { RINGKV_RESP_PORT: '70000' } }, /^invalid RINGKV_RESP_PORT: .*"70000"/],
    [{ file: { keyBytesMax: 0 } }, /^invalid config file option "keyBytesMax"/],
    [{ file: { nosuch: 1 } }, /^invalid config file: unknown option "nosuch"/],
    [{ flags: { nodeId: 'has space' } }, /^invalid --node-id: must be 1-64 characters/],
    [{ flags: { engine: 'rocks' } }, /^invalid --engine/],
    [{ flags: { r: '4' } }, /^invalid --r: must be at most --n-val \(3\), got 4/],
    [{ flags: { nVal: '1' } }, /^invalid --r: must be at most --n-val \(1\), got 2/],
    [{ flags: { join: 'nohost' } }, /^invalid --join: must be HOST:PEERPORT/],
    [{ flags: { partitionCount: '100' } }, /^invalid --partition-count: must be a power of two/],
  ];
  for (const [sources, pattern] of cases) {
    const config = resolve(sources);
    assert.ok(!config.ok, `expected ${JSON.stringify(sources)} to be rejected`);
    assert.equal(config.code, 'CONFIG_INVALID');
    assert.match(config.message, pattern);
    assert.ok(!config.message.includes('\n'), 'one line');
  }
});

test('config: the seed list may be an array in the config file', () => {
  const config = resolve({ file: { join: ['127.0.0.1:7800', 'localhost:7801'] } });
  assert.ok(config.ok);
  assert.equal(config.value.join, '127.0.0.1:7800,localhost:7801');
  const bad = resolve({ file: { join: ['no-port'] } });
  assert.ok(!bad.ok);
  assert.match(bad.message, /^invalid config file option "join": must be HOST:PEERPORT/);
});

test('config: environment variable names follow the flag', () => {
  assert.equal(environmentVariable('dataDir'), 'RINGKV_DATA_DIR');
  assert.equal(environmentVariable('respConnectionsMax'), 'RINGKV_RESP_CONNECTIONS_MAX');
});

test('config: the README table is the one the schema generates', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(configurationTable()), 'README.md is out of date: run `npm run docs:config` and paste the table');
});
