import type { FileOutcome } from '../store/store.ts';
import type { StageStats } from '../schema/staged.ts';

/** The first rejected row of a file, as the ledger shows it. */
export interface FirstRejected {
  row: number;
  column: string | null;
  code: string;
  message: string;
}

/**
 * A file's ledger outcome from its counts: `failed` when onInvalidRows: fail refused it, else
 * `partially_succeeded` with rejected rows, else `succeeded`; the message names the file and the
 * first rejected row.
 */
export function fileOutcome(key: string, stats: StageStats, loaded: { predictions: number; actuals: number }, refused: boolean, first?: FirstRejected): FileOutcome {
  const { rowsRead, rowsRejected } = stats;
  const status = refused ? 'failed' : rowsRejected > 0 ? 'partially_succeeded' : 'succeeded';
  const message = first
    ? refused
      ? `${key}: ${rowsRejected} invalid row(s) and onInvalidRows: fail, so nothing was loaded; first: ${first.message}`
      : `${key}: ${rowsRejected} row(s) rejected; first: ${first.message}`
    : null;
  return {
    status, rowsRead, predictionsLoaded: loaded.predictions, actualsLoaded: loaded.actuals, rowsRejected,
    errorCode: refused ? 'IMP_ERR_ROWS_INVALID' : (first?.code ?? null),
    errorMessage: message,
    errorColumn: first?.column ?? null,
    errorRow: first?.row ?? null,
  };
}
