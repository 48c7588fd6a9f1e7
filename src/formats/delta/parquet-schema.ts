import { MAX_PARQUET_DEPTH, nestingDepth } from '../parquet.ts';
import { sqlString } from '../types.ts';
import { deltaUnreadable } from './errors.ts';
import type { RunQuery } from './types.ts';

/**
 * The logical shape of a parquet file's columns as DuckDB reads them (structs, lists, maps), with the
 * names and field ids needed to map Delta's physical columns onto them.
 */
export interface ParquetNode {
  /** The name DuckDB gives the column or struct field. */
  name: string;
  fieldId?: number;
  kind: 'primitive' | 'struct' | 'list' | 'map';
  /** Physical and logical type of a primitive, kept to tell files with different encodings apart. */
  leafType?: string;
  children?: ParquetNode[];
  element?: ParquetNode;
  key?: ParquetNode;
  value?: ParquetNode;
}

/** One row of DuckDB's `parquet_schema()`: the file's schema tree, flattened depth-first. */
interface RawNode {
  name: string;
  type: string | null;
  repetition: string | null;
  numChildren: number;
  convertedType: string | null;
  logicalType: string | null;
  fieldId?: number;
  scale: string | null;
  precision: string | null;
  children: RawNode[];
}

/** Reads the schema of every file with one query; the result maps each local path to its root struct. */
export async function readParquetSchemas(localPaths: string[], run: RunQuery): Promise<Map<string, ParquetNode>> {
  const result = new Map<string, ParquetNode>();
  if (!localPaths.length) return result;
  const rows = await run(`SELECT file_name, name, type, repetition_type, CAST(num_children AS VARCHAR) AS num_children,
      converted_type, logical_type, CAST(field_id AS VARCHAR) AS field_id, CAST(scale AS VARCHAR) AS scale, CAST(precision AS VARCHAR) AS precision
    FROM parquet_schema([${localPaths.map(sqlString).join(', ')}])`);
  const byFile = new Map<string, RawNode[]>();
  for (const r of rows) {
    const list = byFile.get(String(r.file_name)) ?? [];
    list.push({
      name: String(r.name),
      type: str(r.type),
      repetition: str(r.repetition_type),
      numChildren: r.num_children == null ? 0 : Number(r.num_children),
      convertedType: str(r.converted_type),
      logicalType: str(r.logical_type),
      fieldId: r.field_id == null ? undefined : Number(r.field_id),
      scale: str(r.scale),
      precision: str(r.precision),
      children: [],
    });
    byFile.set(String(r.file_name), list);
  }
  for (const path of localPaths) {
    const flat = byFile.get(path);
    if (!flat?.length) throw deltaUnreadable(`cannot read the parquet schema of ${path}`);
    const depth = nestingDepth(flat.map((n) => n.numChildren));
    if (depth > MAX_PARQUET_DEPTH) throw deltaUnreadable(`a data file of the table (${path}) has columns nested ${depth} levels deep; DuckDB reads at most ${MAX_PARQUET_DEPTH}`);
    let pos = 0;
    const build = (): RawNode => {
      const node = flat[pos++];
      if (!node) throw deltaUnreadable(`the parquet schema of ${path} is truncated`);
      for (let i = 0; i < node.numChildren; i++) node.children.push(build());
      return node;
    };
    const root = build();
    result.set(path, { name: root.name, kind: 'struct', children: root.children.map(interpret) });
  }
  return result;
}

function str(v: unknown): string | null {
  return v == null ? null : String(v);
}

const isGroup = (n: RawNode) => n.numChildren > 0;
const isList = (n: RawNode) => n.convertedType === 'LIST' || /^ListType/i.test(n.logicalType ?? '');
const isMap = (n: RawNode) => n.convertedType === 'MAP' || n.convertedType === 'MAP_KEY_VALUE' || /^MapType/i.test(n.logicalType ?? '');

/** Resolves parquet's list and map encodings (including the legacy two-level ones) the way DuckDB reads them. */
function interpret(node: RawNode): ParquetNode {
  const base = node.fieldId === undefined ? {} : { fieldId: node.fieldId };
  const inner = interpretRequired(node);
  // A repeated field outside a LIST annotation is itself a list.
  if (node.repetition === 'REPEATED') return { name: node.name, ...base, kind: 'list', element: { ...inner, name: 'element' } };
  return inner;
}

function interpretRequired(node: RawNode): ParquetNode {
  const base = { name: node.name, ...(node.fieldId === undefined ? {} : { fieldId: node.fieldId }) };
  if (!isGroup(node)) {
    const leafType = [node.type, node.convertedType, node.logicalType, node.scale, node.precision].map((v) => v ?? '').join('/');
    return { ...base, kind: 'primitive', leafType };
  }
  if (isList(node) && node.children.length === 1) {
    const repeated = node.children[0];
    // Three-level lists wrap the element in a repeated group of one field; legacy two-level lists repeat
    // the element itself (a group named `array` or `<list>_tuple`, or a primitive).
    const threeLevel = isGroup(repeated) && repeated.children.length === 1 && repeated.name !== 'array' && repeated.name !== `${node.name}_tuple`;
    const element = threeLevel ? interpret(repeated.children[0]) : interpretRequired(repeated);
    return { ...base, kind: 'list', element };
  }
  if (isMap(node) && node.children.length === 1 && node.children[0].children.length === 2) {
    const [key, value] = node.children[0].children;
    return { ...base, kind: 'map', key: interpret(key), value: interpret(value) };
  }
  return { ...base, kind: 'struct', children: node.children.map(interpret) };
}
