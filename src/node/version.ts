import { createRequire } from 'node:module';

// src/node/ and dist/node/ are both two levels below the package root.
const packageJson = createRequire(import.meta.url)('../../package.json') as { version: string };

export const ringkvVersion: string = packageJson.version;
