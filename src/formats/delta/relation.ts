import { ROW_NUMBER_COLUMN, sqlIdent, sqlString, type SourceRelation } from '../types.ts';
import { decodeDeletionVector, deletionVectorFilePath, toRanges } from './deletion-vector.ts';
import { mapLimit } from './concurrency.ts';
import { deltaUnreadable } from './errors.ts';
import { readParquetSchemas, type ParquetNode } from './parquet-schema.ts';
import { duckType, fieldId, partitionValueSql, physicalName } from './schema.ts';
import type { ColumnMappingMode, DeltaSnapshot, DeltaStructField, DeltaType, RunQuery } from './types.ts';

// Internal columns of the relation's subqueries; names no Delta writer produces.
const PATH = '"__delta_file_path"';
const FILE = '"__delta_file_index"';
const ROW = '"__delta_row_index"';

/** Downloads at most this many data and deletion-vector files at once. */
const FETCH_CONCURRENCY = 8;

/**
 * Builds a DuckDB table expression (usable after FROM) that yields the logical rows of a snapshot:
 * logical column names in schema order (column mapping resolved by physical name or parquet field id,
 * nested struct fields too), partition columns from `add.partitionValues` cast to their types, columns
 * a file lacks as NULL, every value cast to the table's current type (type widening), rows named by
 * deletion vectors removed, and a 1-based `__source_row` numbered by file (snapshot order) then by
 * row position in the file.
 *
 * Delta `timestamp` columns come out as TIMESTAMPTZ and `timestamp_ntz` as TIMESTAMP, independent of
 * the session's TimeZone. Only the active data files and their deletion-vector files are fetched.
 * `fetch` must return paths without glob characters (`*`, `?`, `[`), as DuckDB expands those.
 */
export async function deltaRelation(snapshot: DeltaSnapshot, fetch: (relPath: string) => Promise<string>, run: RunQuery): Promise<SourceRelation> {
  const mode = snapshot.columnMappingMode;
  const fields = snapshot.schema.fields;
  const partitionFields = snapshot.partitionColumns.map((name) => {
    const field = fields.find((f) => f.name === name) ?? fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
    if (!field) throw deltaUnreadable(`Delta partition column ${JSON.stringify(name)} is not in the table schema`);
    return field;
  });
  const isPartition = new Set(partitionFields);
  const dataFields = fields.filter((f) => !isPartition.has(f));
  const columnList = fields.map((f) => sqlIdent(f.name)).join(', ');

  if (snapshot.files.length === 0) {
    const nulls = fields.map((f) => `CAST(NULL AS ${duckType(f.type)}) AS ${sqlIdent(f.name)}`);
    return { sql: `(SELECT CAST(NULL AS BIGINT) AS ${ROW_NUMBER_COLUMN}, ${nulls.join(', ')} WHERE false)`, rowNumberColumn: ROW_NUMBER_COLUMN };
  }

  const seen = new Set<string>();
  for (const file of snapshot.files) {
    if (seen.has(file.path)) throw deltaUnreadable(`the Delta snapshot lists ${file.path} twice`);
    seen.add(file.path);
  }

  // DV files are shared by many data files: fetch each once.
  const fetched = new Map<string, Promise<string>>();
  const fetchOnce = (p: string) => {
    let local = fetched.get(p);
    if (!local) fetched.set(p, (local = fetch(p)));
    return local;
  };
  const localPaths = await mapLimit(snapshot.files, FETCH_CONCURRENCY, (f) => fetchOnce(f.path));
  const deleted = await mapLimit(snapshot.files, FETCH_CONCURRENCY, (f) => {
    if (!f.deletionVector) return Promise.resolve(undefined);
    const dvFile = deletionVectorFilePath(f.deletionVector);
    return decodeDeletionVector(f.deletionVector, dvFile === undefined ? fetch : () => fetchOnce(dvFile));
  });
  if (new Set(localPaths).size !== localPaths.length) throw deltaUnreadable('fetch returned the same local path for two data files');
  const schemas = await readParquetSchemas(localPaths, run);

  // Files with the same physical schema are read by one read_parquet call.
  const groups = new Map<string, string[]>();
  for (const path of localPaths) {
    const key = JSON.stringify(schemas.get(path));
    const group = groups.get(key) ?? [];
    group.push(path);
    groups.set(key, group);
  }
  const reads = [...groups.values()].map((paths) => {
    const root = schemas.get(paths[0]) as ParquetNode;
    const projection = dataFields.map((f) => {
      const column = findField(root, f, mode);
      return `${convert(column && sqlIdent(column.name), f.type, column, mode, f.name, 0)} AS ${sqlIdent(f.name)}`;
    });
    return `SELECT ${[PATH, `file_row_number AS ${ROW}`, ...projection].join(', ')}
      FROM read_parquet([${paths.map(sqlString).join(', ')}], filename = ${sqlString(PATH.slice(1, -1))}, file_row_number = true, hive_partitioning = false, binary_as_string = false)`;
  });

  const fileRows = snapshot.files.map((file, i) => {
    const partitionValues = partitionFields.map((f) => {
      const key = physicalName(f, mode);
      const value = key in file.partitionValues ? file.partitionValues[key] : file.partitionValues[f.name];
      return partitionValueSql(value, f.type);
    });
    return `(${[sqlString(localPaths[i]), String(i), ...partitionValues].join(', ')})`;
  });
  const fileTable = `(VALUES ${fileRows.join(', ')}) AS f(${[PATH, FILE, ...partitionFields.map((f) => sqlIdent(f.name))].join(', ')})`;

  const deletedRanges: string[] = [];
  deleted.forEach((rows, i) => {
    for (const [start, end] of toRanges(rows ?? [])) deletedRanges.push(`(${i}, ${start}, ${end})`);
  });
  const antiJoin = deletedRanges.length
    ? ` ANTI JOIN (SELECT i AS ${FILE}, unnest(generate_series(CAST(s AS BIGINT), CAST(e AS BIGINT))) AS ${ROW}
        FROM (VALUES ${deletedRanges.join(', ')}) AS d(i, s, e)) AS d ON d.${FILE} = f.${FILE} AND d.${ROW} = g.${ROW}`
    : '';

  const columns = fields.map((f) => `${isPartition.has(f) ? 'f' : 'g'}.${sqlIdent(f.name)}`);
  const rows = `SELECT f.${FILE}, g.${ROW}${columns.length ? `, ${columns.join(', ')}` : ''}
    FROM (${reads.join(' UNION ALL ')}) AS g JOIN ${fileTable} ON g.${PATH} = f.${PATH}${antiJoin}`;
  return {
    sql: `(SELECT row_number() OVER (ORDER BY ${FILE}, ${ROW}) AS ${ROW_NUMBER_COLUMN}, ${columnList} FROM (${rows}))`,
    rowNumberColumn: ROW_NUMBER_COLUMN,
  };
}

/** The file column or struct field that holds a Delta field: by field id in `id` mode, else by (physical) name. */
function findField(struct: ParquetNode, field: DeltaStructField, mode: ColumnMappingMode): ParquetNode | undefined {
  const children = struct.children ?? [];
  if (mode === 'id') {
    const id = fieldId(field);
    const byId = id === undefined ? undefined : children.find((c) => c.fieldId === id);
    if (byId) return byId;
  }
  const name = physicalName(field, mode);
  const exact = children.find((c) => c.name === name);
  if (exact) return exact;
  // Parquet names are case-sensitive, Spark's are not: accept a case-only difference when unambiguous.
  const loose = children.filter((c) => c.name.toLowerCase() === name.toLowerCase());
  return loose.length === 1 ? loose[0] : undefined;
}

/**
 * SQL turning a value read from a file (`expr`, shaped as `node`) into the Delta type: structs rebuilt
 * with logical field names (missing fields NULL), lists and maps converted element-wise, and leaves cast.
 */
function convert(expr: string | undefined, type: DeltaType, node: ParquetNode | undefined, mode: ColumnMappingMode, where: string, depth: number): string {
  const target = duckType(type);
  if (expr === undefined || node === undefined) return `CAST(NULL AS ${target})`;
  const mismatch = () => deltaUnreadable(`Delta column ${where} is ${target} in the table schema but a ${node.kind} in a data file`);
  if (typeof type === 'string') {
    if (node.kind !== 'primitive') throw mismatch();
    return convertLeaf(expr, type, target);
  }
  if (type.type === 'struct') {
    if (node.kind !== 'struct') throw mismatch();
    const parts = type.fields.map((f) => {
      const child = findField(node, f, mode);
      const childExpr = child && `struct_extract(${expr}, ${sqlString(child.name)})`;
      return `${sqlIdent(f.name)} := ${convert(childExpr, f.type, child, mode, `${where}.${f.name}`, depth + 1)}`;
    });
    // struct_pack of a NULL struct's fields would give a struct of NULLs, not NULL.
    return `CASE WHEN ${expr} IS NULL THEN NULL ELSE struct_pack(${parts.join(', ')}) END`;
  }
  if (type.type === 'array') {
    if (node.kind !== 'list' || !node.element) throw mismatch();
    if (isPlainCast(type.elementType)) return `CAST(${expr} AS ${target})`;
    const v = `__delta_e${depth}`;
    return `CAST(list_transform(${expr}, lambda ${v}: ${convert(v, type.elementType, node.element, mode, `${where}[]`, depth + 1)}) AS ${target})`;
  }
  if (node.kind !== 'map' || !node.key || !node.value) throw mismatch();
  if (isPlainCast(type.keyType) && isPlainCast(type.valueType)) return `CAST(${expr} AS ${target})`;
  const v = `__delta_m${depth}`;
  const key = convert(`${v}.key`, type.keyType, node.key, mode, `${where}.key`, depth + 1);
  const value = convert(`${v}.value`, type.valueType, node.value, mode, `${where}.value`, depth + 1);
  return `CAST(map_from_entries(list_transform(map_entries(${expr}), lambda ${v}: struct_pack(key := ${key}, value := ${value}))) AS ${target})`;
}

/** True for element types a plain CAST converts correctly (no names to map, no time zone to fix). */
function isPlainCast(type: DeltaType): boolean {
  return typeof type === 'string' && type !== 'timestamp' && type !== 'timestamp_ntz';
}

function convertLeaf(expr: string, type: string, target: string): string {
  // Files hold timestamps as INT96 or INT64 (naive or UTC-adjusted), and a plain CAST between TIMESTAMP
  // and TIMESTAMPTZ would apply the session's TimeZone. Going through epoch microseconds does not;
  // it also widens a DATE (type widening date → timestamp_ntz).
  if (type === 'timestamp') return `timezone('UTC', make_timestamp(epoch_us(${expr})))`;
  if (type === 'timestamp_ntz') return `make_timestamp(epoch_us(${expr}))`;
  return `CAST(${expr} AS ${target})`;
}
