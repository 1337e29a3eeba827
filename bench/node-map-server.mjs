// The calibration peer of bench/resp.ts: the least a Node.js server can do to answer
// redis-benchmark's SET and GET from a Map (no versions, no validation, no limits). Its ratio to
// Redis is the ceiling for any Node.js server on this machine, measured in the same run.
import { createServer } from 'node:net';

const port = Number(process.argv[2]);
const store = new Map();

function reply(args) {
  const command = args[0].toString('latin1').toUpperCase();
  if (command === 'SET') {
    store.set(args[1].toString('latin1'), Buffer.from(args[2]));
    return '+OK\r\n';
  }
  if (command === 'GET') {
    const value = store.get(args[1].toString('latin1'));
    return value === undefined ? '$-1\r\n' : `$${value.length}\r\n${value.toString('latin1')}\r\n`;
  }
  return command === 'CONFIG' ? '*0\r\n' : '+PONG\r\n';
}

/** Parses the complete RESP arrays at the start of `data`; returns [replies, bytes consumed]. */
function parse(data) {
  let offset = 0;
  let out = '';
  while (offset < data.length) {
    const start = offset;
    let lineEnd = data.indexOf(13, offset);
    if (data[offset] !== 42 || lineEnd < 0) break;
    const count = Number(data.toString('latin1', offset + 1, lineEnd));
    offset = lineEnd + 2;
    const args = [];
    for (let index = 0; index < count; index++) {
      lineEnd = data.indexOf(13, offset);
      if (lineEnd < 0) break;
      const length = Number(data.toString('latin1', offset + 1, lineEnd));
      if (lineEnd + 2 + length + 2 > data.length) break;
      args.push(data.subarray(lineEnd + 2, lineEnd + 2 + length));
      offset = lineEnd + 2 + length + 2;
    }
    if (args.length < count) return [out, start];
    out += reply(args);
  }
  return [out, offset];
}

createServer((socket) => {
  socket.setNoDelay(true);
  let pending = Buffer.alloc(0);
  socket.on('data', (chunk) => {
    const data = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    const [out, consumed] = parse(data);
    pending = data.subarray(consumed);
    if (out.length > 0) socket.write(out, 'latin1');
  });
  socket.on('error', () => {});
}).listen(port, '127.0.0.1');
