import { deltaUnreadable } from './errors.ts';
import type { DeltaProtocol } from './types.ts';

/**
 * Reader features this reader implements. Anything else may change which rows a table holds or how
 * they are read (variant columns, catalog-managed commits, …), so such tables are refused.
 */
export const SUPPORTED_READER_FEATURES: ReadonlySet<string> = new Set([
  'columnMapping',
  'deletionVectors',
  'timestampNtz',
  'typeWidening',
  'typeWidening-preview',
  'v2Checkpoint',
  // Only constrains VACUUM; reading is unchanged.
  'vacuumProtocolCheck',
]);

/** The highest reader version this reader implements (3: reader features). */
export const MAX_READER_VERSION = 3;

/** Throws an `IMP_ERR_FORMAT_UNREADABLE` error naming what is unsupported when this reader cannot read the table. */
export function checkReaderProtocol(protocol: DeltaProtocol): void {
  const version = protocol.minReaderVersion;
  if (!Number.isInteger(version) || version < 1) throw deltaUnreadable(`the Delta protocol has an invalid minReaderVersion ${JSON.stringify(version)}`);
  if (version > MAX_READER_VERSION) {
    throw deltaUnreadable(`the Delta table requires reader version ${version}, which is not supported (at most ${MAX_READER_VERSION})`);
  }
  // Before version 3 features are implied by the version (2 = column mapping), all of which are supported.
  if (version < 3) return;
  const unsupported = (protocol.readerFeatures ?? []).filter((f) => !SUPPORTED_READER_FEATURES.has(f));
  if (unsupported.length === 1) {
    throw deltaUnreadable(`the Delta table requires reader feature "${unsupported[0]}", which is not supported`);
  }
  if (unsupported.length > 1) {
    throw deltaUnreadable(`the Delta table requires reader features ${unsupported.map((f) => `"${f}"`).join(', ')}, which are not supported`);
  }
}
