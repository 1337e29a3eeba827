import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ESLint } from 'eslint';

// The rule of the architecture (DESIGN.md): src/core/ is pure. The lint config enforces it;
// this test proves the rule bites, on code that breaks it, and lets pure code through.
const eslint = new ESLint({ cwd: new URL('../..', import.meta.url).pathname });

async function ruleIds(code: string, filePath: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).map((message) => message.ruleId ?? message.message);
}

test('lint: src/core/ may not import node:* modules, read the clock, draw Math.random or set timers', async () => {
  const cases: [string, string][] = [
    ["import { readFileSync } from 'node:fs';\nexport const text = readFileSync('x');\n", 'no-restricted-imports'],
    ['export const now = Date.now();\n', 'no-restricted-properties'],
    ['export const roll = Math.random();\n', 'no-restricted-properties'],
    ['export const at = new Date();\n', 'no-restricted-syntax'],
    ['setTimeout(() => {}, 1);\n', 'no-restricted-globals'],
    ['export const tick = performance.now();\n', 'no-restricted-properties'],
    ['export async function f(p: Promise<number>): Promise<number> {\n  return await p;\n}\n', 'no-restricted-syntax'],
    ["import { RespWriter } from '../api/resp-writer.js';\nexport const w = RespWriter;\n", 'no-restricted-imports'],
  ];
  for (const [code, rule] of cases) {
    assert.ok((await ruleIds(code, 'src/core/probe.ts')).includes(rule), `expected ${rule} to flag:\n${code}`);
  }
});

test('lint: the same code outside src/core/ passes, and pure core code passes', async () => {
  assert.deepEqual(await ruleIds('export const now = Date.now();\n', 'src/node/probe.ts'), []);
  assert.deepEqual(await ruleIds("import { assert } from './assert.js';\nexport function f(x: number): number {\n  assert(x > 0, 'x');\n  return x * 2;\n}\n", 'src/core/probe.ts'), []);
});
