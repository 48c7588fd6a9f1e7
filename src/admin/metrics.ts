import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Every metric the importer exports, with its labels, in one place so cardinality is visible:
 * labels are job IDs and small fixed sets, never file keys.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'importer_' });
  const registers = [registry];
  return {
    registry,
    pollDuration: new Histogram({
      name: 'importer_poll_duration_seconds', help: 'Time to list a job prefix and diff it against the ledger',
      labelNames: ['job'], buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers,
    }),
    objectsListed: new Gauge({ name: 'importer_objects_listed', help: 'Objects under the prefix at the last poll', labelNames: ['job'], registers }),
    pollErrors: new Counter({ name: 'importer_poll_errors_total', help: 'Polls that failed (listing or ledger)', labelNames: ['job'], registers }),
    lastPoll: new Gauge({ name: 'importer_last_successful_poll_timestamp_seconds', help: 'When the prefix was last listed successfully', labelNames: ['job'], registers }),
    filesDiscovered: new Counter({
      name: 'importer_files_discovered_total', help: 'File versions found by polling', labelNames: ['job', 'kind'], registers,
    }),
    filesImported: new Counter({
      name: 'importer_files_imported_total', help: 'Import attempts that ended, by outcome', labelNames: ['job', 'outcome'], registers,
    }),
    bytesRead: new Counter({ name: 'importer_bytes_read_total', help: 'Bytes downloaded from S3', labelNames: ['job'], registers }),
    rowsLoaded: new Counter({ name: 'importer_rows_loaded_total', help: 'Rows loaded into the store', labelNames: ['job', 'kind'], registers }),
    rowsRejected: new Counter({ name: 'importer_rows_rejected_total', help: 'Rows rejected by validation', labelNames: ['job', 'reason'], registers }),
    importDuration: new Histogram({
      name: 'importer_import_duration_seconds', help: 'Time to download, read and load one file',
      labelNames: ['job'], buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600], registers,
    }),
    importLag: new Histogram({
      name: 'importer_import_lag_seconds', help: 'From the object LastModified to the rows committed',
      labelNames: ['job'], buckets: [1, 2.5, 5, 10, 15, 30, 60, 120, 300, 900, 3600], registers,
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
