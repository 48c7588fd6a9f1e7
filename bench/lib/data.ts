/** DuckDB COPY options per format. */
export const FORMATS = {
  parquet: { ext: 'parquet', copy: 'FORMAT parquet', read: (f: string) => `read_parquet('${f}')` },
  csv: { ext: 'csv', copy: 'FORMAT csv, HEADER true', read: (f: string) => `read_csv('${f}')` },
  ndjson: { ext: 'ndjson', copy: 'FORMAT json', read: (f: string) => `read_json('${f}')` },
} as const;
export type Format = keyof typeof FORMATS;

/** A 36-character, UUID-shaped ID that is a function of the row number, so actuals can name their predictions. */
const idSql = (i: string) => `regexp_replace(md5(${i}::VARCHAR || 'bench'), '^(.{8})(.{4})(.{4})(.{4})(.{12})$', '\\1-\\2-\\3-\\4-\\5')`;

/**
 * Predictions rows `from` ≤ i < `to`: ID, timestamp spread over `days` days from 2026-11-01, version,
 * label, score, 20 numeric and 5 string features, 2 tags (32 columns).
 */
export function predictionsSql(from: number, to: number, days = 10): string {
  const features = [
    ...Array.from({ length: 20 }, (_, k) => `(hash(i * ${k + 7}) % 100000) / 100.0 AS "feature/n${k}"`),
    ...Array.from({ length: 5 }, (_, k) => `'cat' || (hash(i + ${k}) % 50) AS "feature/s${k}"`),
  ].join(', ');
  return `SELECT ${idSql('i')} AS prediction_id,
      TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_seconds(((i - ${from}) * ${days * 86400}) // ${Math.max(1, to - from)}) AS prediction_ts,
      'v1' AS model_version, CASE WHEN hash(i) % 2 = 0 THEN 'yes' ELSE 'no' END AS predicted_label, (hash(i) % 1000) / 1000.0 AS score,
      ${features}, 'eu' AS "tag/region", 'web' AS "tag/channel"
    FROM range(${from}, ${to}) t(i)`;
}

/** Actuals for 30 % of the IDs of predictions 0 ≤ i < n, in shuffled order, a day after their prediction. */
export function actualsSql(n: number, days = 10): string {
  return `SELECT ${idSql('i')} AS prediction_id, CASE WHEN hash(i * 3) % 2 = 0 THEN 'yes' ELSE 'no' END AS actual_label,
      TIMESTAMPTZ '2026-11-02 00:00:00+00' + to_seconds((i * ${days * 86400}) // ${Math.max(1, n)}) AS actual_ts
    FROM range(${n}) t(i) WHERE hash(i) % 10 < 3 ORDER BY hash(i * 7)`;
}

export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
