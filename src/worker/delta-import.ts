import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import { deltaRelation, replayDeltaLog } from '../formats/delta/index.ts';
import { ImporterError } from '../errors.ts';
import type { SourceRelation } from '../formats/index.ts';
import { downloadObject, listObjects, type DownloadParts } from '../source/index.ts';
import type { RunQuery } from '../schema/staged.ts';
import type { ListedObject } from '../store/store.ts';

/**
 * The relation of a Delta table at the version the ledger recorded: the table root is listed once,
 * the log replayed up to that version (newest complete checkpoint by listing, then commits), and
 * only the files the snapshot needs are downloaded into `dir` (checkpoint, commits, sidecars,
 * active data files, deletion vectors), each exactly the listed version. Rows of the whole snapshot
 * replace what earlier versions of the table contributed.
 */
export async function deltaSource(s3: S3Client, run: RunQuery, version: ListedObject, dir: string, maxBytes: number, parts: DownloadParts): Promise<SourceRelation> {
  const root = version.key;
  const tableVersion = Number(version.etag.replace(/^v/, ''));
  const listed = new Map((await listObjects(s3, version.bucket, root)).map((o) => [o.key.slice(root.length), o]));
  const fetched = new Map<string, Promise<string>>();
  const fetch = (rel: string): Promise<string> => {
    let done = fetched.get(rel);
    if (!done) {
      done = (async () => {
        const object = listed.get(rel);
        if (!object) {
          throw new ImporterError('IMP_ERR_SOURCE_VANISHED', `s3://${version.bucket}/${root}${rel} is named by the Delta log but not in the bucket (vacuumed?)`, { permanent: true });
        }
        const path = join(dir, rel);
        await mkdir(dirname(path), { recursive: true });
        const outcome = await downloadObject(s3, object, path, maxBytes, parts);
        if (outcome.kind !== 'downloaded') throw new ImporterError('IMP_ERR_SOURCE_SUPERSEDED', `s3://${version.bucket}/${root}${rel} changed while the table was read; it is read again`);
        return path;
      })();
      fetched.set(rel, done);
    }
    return done;
  };
  const logFiles = [...listed.keys()].filter((k) => k.startsWith('_delta_log/')).map((k) => k.slice('_delta_log/'.length));
  const snapshot = await replayDeltaLog({ logFiles, fetch }, run, { maxVersion: tableVersion });
  return deltaRelation(snapshot, fetch, run);
}
