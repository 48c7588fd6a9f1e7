import { sqlIdent, sqlString } from '../types.ts';
import { deltaUnreadable } from './errors.ts';
import type { ColumnMappingMode, DeltaStructField, DeltaStructType, DeltaType } from './types.ts';

/** Delta primitive types and the DuckDB types the logical table uses for them. */
const PRIMITIVES: Record<string, string> = {
  string: 'VARCHAR',
  long: 'BIGINT',
  integer: 'INTEGER',
  short: 'SMALLINT',
  byte: 'TINYINT',
  float: 'FLOAT',
  double: 'DOUBLE',
  boolean: 'BOOLEAN',
  binary: 'BLOB',
  date: 'DATE',
  // Delta `timestamp` is an instant (UTC-adjusted); `timestamp_ntz` is a wall-clock time.
  timestamp: 'TIMESTAMP WITH TIME ZONE',
  timestamp_ntz: 'TIMESTAMP',
};

const DECIMAL = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/;

/** The DuckDB type of a Delta type (struct fields keep their logical names). Throws for types it cannot read. */
export function duckType(type: DeltaType): string {
  if (typeof type === 'string') {
    const primitive = PRIMITIVES[type];
    if (primitive) return primitive;
    const decimal = DECIMAL.exec(type);
    if (decimal && Number(decimal[1]) >= 1 && Number(decimal[1]) <= 38 && Number(decimal[2]) <= Number(decimal[1])) {
      return `DECIMAL(${decimal[1]},${decimal[2]})`;
    }
    throw deltaUnreadable(`Delta type ${JSON.stringify(type)} is not supported`);
  }
  switch (type.type) {
    case 'struct':
      if (!type.fields?.length) throw deltaUnreadable('a Delta struct type without fields is not supported');
      return `STRUCT(${type.fields.map((f) => `${sqlIdent(f.name)} ${duckType(f.type)}`).join(', ')})`;
    case 'array':
      return `${duckType(type.elementType)}[]`;
    case 'map':
      return `MAP(${duckType(type.keyType)}, ${duckType(type.valueType)})`;
    default:
      throw deltaUnreadable(`Delta type ${JSON.stringify((type as { type: unknown }).type)} is not supported`);
  }
}

/** Parses `metaData.schemaString` and checks every column has a type this reader supports. */
export function parseSchema(schemaString: string): DeltaStructType {
  let schema: DeltaStructType;
  try {
    schema = JSON.parse(schemaString) as DeltaStructType;
  } catch (err) {
    throw deltaUnreadable(`the Delta schema is not valid JSON: ${(err as Error).message}`, err);
  }
  if (schema?.type !== 'struct' || !Array.isArray(schema.fields)) throw deltaUnreadable('the Delta schema is not a struct');
  duckType(schema);
  return schema;
}

/** The name a field has in the data files: its physical name under column mapping, else its name. */
export function physicalName(field: DeltaStructField, mode: ColumnMappingMode): string {
  const physical = field.metadata?.['delta.columnMapping.physicalName'];
  return mode !== 'none' && typeof physical === 'string' && physical ? physical : field.name;
}

/** The parquet field id of a field under column mapping, if it has one. */
export function fieldId(field: DeltaStructField): number | undefined {
  const id = field.metadata?.['delta.columnMapping.id'];
  return typeof id === 'number' ? id : typeof id === 'string' && /^\d+$/.test(id) ? Number(id) : undefined;
}

/** The column mapping mode of a table, from `delta.columnMapping.mode`. */
export function columnMappingMode(configuration: Record<string, string>): ColumnMappingMode {
  const mode = (configuration['delta.columnMapping.mode'] ?? 'none').toLowerCase();
  if (mode === 'none' || mode === 'name' || mode === 'id') return mode;
  throw deltaUnreadable(`Delta column mapping mode ${JSON.stringify(mode)} is not supported`);
}

/** A time of day followed by an offset (`Z`, `+02`, `-07:00`): such timestamps carry their own zone. */
const HAS_OFFSET = /\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([zZ]|[+-]\d{2}(:?\d{2})?)$/;

/**
 * A SQL literal of a serialized partition value (Delta protocol, "Partition Value Serialization"),
 * typed as the column. JSON null, a missing value, Hive's `__HIVE_DEFAULT_PARTITION__` and the empty
 * string are NULL; the string "null" is that string. Bad values fail the query rather than read as NULL.
 */
export function partitionValueSql(value: string | null | undefined, type: DeltaType): string {
  const target = duckType(type);
  if (value === null || value === undefined || value === '' || value === '__HIVE_DEFAULT_PARTITION__') return `CAST(NULL AS ${target})`;
  if (typeof type !== 'string') throw deltaUnreadable(`partition column of nested type ${target} is not supported`);
  switch (type) {
    case 'string':
      return `CAST(${sqlString(value)} AS VARCHAR)`;
    case 'binary':
      // The value is the bytes themselves, written as a (UTF-8) string.
      return `from_hex(${sqlString(Buffer.from(value, 'utf8').toString('hex'))})`;
    case 'timestamp':
      // Without an offset the value is UTC (the protocol); `timezone` keeps that independent of the session's TimeZone.
      return HAS_OFFSET.test(value)
        ? `CAST(${sqlString(value)} AS TIMESTAMP WITH TIME ZONE)`
        : `timezone('UTC', CAST(${sqlString(value)} AS TIMESTAMP))`;
    default:
      return `CAST(${sqlString(value)} AS ${target})`;
  }
}
