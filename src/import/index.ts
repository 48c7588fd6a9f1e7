export { Importer } from './importer.ts';
export * from './types.ts';
export { fileOutcome } from './outcome.ts';
