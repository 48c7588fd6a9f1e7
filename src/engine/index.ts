import { join } from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';
import { sqlString } from '../formats/index.ts';

/** Runs a query on a DuckDB connection and returns JSON-friendly rows. */
export type RunQuery = (sql: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>;

/**
 * The DuckDB that reads, maps and validates files. For the embedded store it is the store's own
 * database (rows go from file to table without leaving DuckDB); for other stores a private
 * in-memory DuckDB per process, whose rows leave by `writeCsv` into the store's bulk load.
 */
export interface Engine {
  run: RunQuery;
  /** Writes the rows of a query to a headerless CSV file (NULL as an empty field, '' quoted); returns the row count. */
  writeCsv(sql: string, path: string): Promise<number>;
  /** Opens a connection that reads files beside this one, outside any import's turn (see `EngineReader`). */
  openReader(): Promise<EngineReader>;
}

/**
 * A second connection of an engine's DuckDB: it reads a file while the engine's own connection
 * imports others, into tables under `space` that the engine's connection then reads in place (no
 * copy). Same instance, so the same memory limit, threads, spill folder and sandbox.
 */
export interface EngineReader {
  run: RunQuery;
  /** The schema, `database.schema`, whose tables every connection of the engine sees. */
  space: string;
  close(): void;
}

/** An engine whose owner closes it: `closeReaders` stops the readers still reading and closes every reader (shutdown). */
export type OwnedEngine = Engine & { closeReaders(): Promise<void> };

/**
 * Runs `fn` with this connection's session not keeping insertion order: rows carry their
 * source_row, so keeping the scan's order would only cost a bulk statement its parallelism and
 * memory. SESSION, not the instance-wide SET: a reader materialising a file meanwhile keeps its order.
 */
export async function withoutInsertionOrder<T>(conn: DuckDBConnection, fn: () => Promise<T>): Promise<T> {
  await conn.run('SET SESSION preserve_insertion_order = false');
  try {
    return await fn();
  } finally {
    await conn.run('RESET SESSION preserve_insertion_order');
  }
}

const runOn = (conn: DuckDBConnection): RunQuery => async (sql, params = []) =>
  (await conn.runAndReadAll(sql, params as DuckDBValue[])).getRowObjectsJson() as Array<Record<string, unknown>>;

/**
 * An engine over one DuckDB connection (temp tables live on that connection); its readers are
 * further connections of `instance` keeping their tables in `space`.
 */
export function engineOn(conn: DuckDBConnection, instance: DuckDBInstance, space: string): OwnedEngine {
  const run = runOn(conn);
  /** Open readers and their statements under way: a connection closed while a statement runs hangs its close. */
  const readers = new Map<DuckDBConnection, Set<Promise<unknown>>>();
  return {
    run,
    async writeCsv(sql, path) {
      const rows = await withoutInsertionOrder(conn, () => run(`COPY (${sql}) TO ${sqlString(path)} (FORMAT csv, HEADER false)`));
      return Number(rows[0]?.Count ?? 0);
    },
    async openReader() {
      const reader = await instance.connect();
      const running = new Set<Promise<unknown>>();
      readers.set(reader, running);
      const runReader = runOn(reader);
      // Naive timestamps in files are read as UTC, whatever the host's zone (a setting of each connection).
      await reader.run("SET TimeZone = 'UTC'");
      return {
        run: (sql, params) => {
          if (!readers.has(reader)) return Promise.reject(new Error('the engine reader is closed'));
          const statement = runReader(sql, params);
          running.add(statement);
          statement.then(() => running.delete(statement), () => running.delete(statement));
          return statement;
        },
        space,
        close: () => {
          if (readers.delete(reader)) reader.closeSync();
        },
      };
    },
    async closeReaders() {
      const open = [...readers];
      for (const [reader, running] of open) if (running.size) reader.interrupt();
      await Promise.allSettled(open.flatMap(([, running]) => [...running]));
      for (const [reader] of open) {
        if (readers.delete(reader)) reader.closeSync();
      }
    },
  };
}

/**
 * Shuts a DuckDB connection in: SQL on it can read and write files under `dir` and nothing else
 * (no other path, no URL, no ATTACH), so a job's `select` and read options reach only the download.
 */
export async function sandbox(conn: DuckDBConnection, dir: string): Promise<void> {
  const folder = dir.endsWith('/') ? dir : `${dir}/`;
  await conn.run(`SET allowed_directories = [${sqlString(folder)}]`);
  await conn.run('SET enable_external_access = false');
}

/** Settings of a private engine. */
export interface MemoryEngineOptions {
  /** The only folder its SQL may read and write (the downloads). */
  readableDirectory: string;
  /** DuckDB `memory_limit`. */
  memoryLimit: string;
  /** DuckDB `threads`; default the number of cores. */
  threads?: number;
  /** DuckDB `max_temp_directory_size`; default DuckDB's own (90% of the free disk). */
  maxTempBytes?: number;
}

/** A private in-memory engine, sandboxed to the downloads folder; `close` frees it. */
export async function openMemoryEngine(options: MemoryEngineOptions): Promise<OwnedEngine & { close(): void }> {
  // An in-memory DuckDB spills to `.tmp` in the working directory unless told otherwise: into the
  // process's own temp folder instead, which is removed with it (or, after a kill, at the next start).
  const settings: Record<string, string> = { memory_limit: options.memoryLimit, temp_directory: join(options.readableDirectory, '.spill') };
  if (options.threads) settings.threads = String(options.threads);
  if (options.maxTempBytes) settings.max_temp_directory_size = `${options.maxTempBytes} bytes`;
  const instance = await DuckDBInstance.create(':memory:', settings);
  const conn = await instance.connect();
  // Naive timestamps in files are read as UTC, whatever the host's zone.
  await conn.run("SET TimeZone = 'UTC'");
  await sandbox(conn, options.readableDirectory);
  // The in-memory database itself holds what readers read: every connection of the instance sees it.
  const engine = engineOn(conn, instance, 'memory.main');
  return {
    ...engine,
    // Owners that open readers await `closeReaders` first.
    close() {
      conn.closeSync();
      instance.closeSync();
    },
  };
}
