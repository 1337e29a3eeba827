// Prints the configuration table of the README, generated from the schema in src/node/config.ts.
import { configurationTable } from '../src/node/config.js';

console.log(configurationTable());
