#!/usr/bin/env node
// Runs the compiled daemon (`npm run build` writes dist/). In a git checkout without a build, falls
// back to running the TypeScript sources through tsx (a development dependency).
import { existsSync } from 'node:fs';

if (existsSync(new URL('../dist/cli.js', import.meta.url))) {
  await import('../dist/cli.js');
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli.ts');
}
