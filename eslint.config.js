import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// assert() runs on hot paths: a template literal message would be formatted on every call.
const eagerAssertMessage = {
  selector: 'CallExpression[callee.name="assert"] > TemplateLiteral.arguments',
  message: 'Pass an interpolated assert message as a function (() => `...`): a template literal is formatted on every call.',
};

// src/core/ is pure and deterministic (../shared/DESIGN.md): no node:* modules, no wall clock,
// no Math.random, no timers. Time and randomness come in as arguments.
const coreRules = {
  'no-restricted-imports': ['error', {
    patterns: [
      { group: ['node:*'], message: 'src/core/ is pure: no node:* imports.' },
      { group: ['fs', 'net', 'os', 'path', 'crypto', 'child_process', 'worker_threads', 'timers', 'http'], message: 'src/core/ is pure: no Node built-ins.' },
      { group: ['../*', '!../core/*'], message: 'src/core/ imports nothing but src/core/.' },
    ],
  }],
  'no-restricted-properties': ['error',
    { object: 'Date', property: 'now', message: 'src/core/ takes time as an argument.' },
    { object: 'Math', property: 'random', message: 'src/core/ takes a seeded Random.' },
    { object: 'performance', property: 'now', message: 'src/core/ takes time as an argument.' },
    { object: 'process', property: 'hrtime', message: 'src/core/ takes time as an argument.' },
  ],
  'no-restricted-globals': ['error',
    ...['setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'clearImmediate', 'queueMicrotask', 'process', 'performance', 'Buffer']
      .map((name) => ({ name, message: `src/core/ is pure and synchronous: no ${name}.` })),
  ],
  'no-restricted-syntax': ['error',
    eagerAssertMessage,
    { selector: 'NewExpression[callee.name="Date"][arguments.length=0]', message: 'src/core/ takes time as an argument.' },
    { selector: 'AwaitExpression', message: 'src/core/ is synchronous.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'data/', '.tmp/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly', URL: 'readonly', fetch: 'readonly', performance: 'readonly', queueMicrotask: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', AbortController: 'readonly' } },
    rules: {
      'no-restricted-syntax': ['error', eagerAssertMessage],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  // Tests beside core modules use node:test and may time themselves; the code under test may not.
  { files: ['src/core/**/*.ts'], ignores: ['src/core/**/*.test.ts'], rules: coreRules },
);
