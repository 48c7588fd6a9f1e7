export { loadConfig, validateConfig, expandEnv, DEFAULT_CONFIG_PATH } from './load.ts';
export { configSchema, FORMATS, type Config, type JobConfig, type FieldMapping, type SourceFormat, type FeatureType, type SqlSource } from './schema.ts';
export { parseDuration, parseSize } from './units.ts';
