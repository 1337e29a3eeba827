// RespWriter's encodings against the Redis protocol's text form, built here with template strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RespWriter } from './resp-writer.js';

test('resp writer: bulk strings of every digit count, OK, null, and growth past the first buffer', () => {
  const writer = new RespWriter(8);
  let expected = '';
  for (const length of [0, 1, 9, 10, 99, 100, 999, 1000, 65_535, 1_048_576]) {
    const value = Buffer.alloc(length, 0x61 + (length % 26));
    writer.bulk(value);
    expected += `$${length}\r\n${value.toString('latin1')}\r\n`;
    writer.ok();
    expected += '+OK\r\n';
  }
  writer.bulk(null);
  expected += '$-1\r\n';
  assert.equal(writer.byteLength, expected.length);
  assert.equal(writer.take().toString('latin1'), expected);
  assert.equal(writer.byteLength, 0);
});
