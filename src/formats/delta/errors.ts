import { ImporterError } from '../../errors.ts';

/**
 * The error for a Delta table this reader cannot read correctly (an unsupported feature, a broken or
 * incomplete log, a corrupt deletion vector). Permanent: retrying the same table state cannot help.
 */
export function deltaUnreadable(message: string, cause?: unknown): ImporterError {
  return new ImporterError('IMP_ERR_FORMAT_UNREADABLE', message, { permanent: true, cause });
}
