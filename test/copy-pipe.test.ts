import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { openMemoryEngine } from '../src/engine/index.ts';
import { CsvPipe } from '../src/store/postgres/copy-pipe.ts';
import { tmpDir, type TmpDir } from './helpers/tmp.ts';

/** A consumer that keeps what it is given, or fails at its first chunk. */
function sink(fail?: string) {
  const chunks: Buffer[] = [];
  return {
    text: () => Buffer.concat(chunks).toString(),
    stream: () => new Writable({ write(c, _e, cb) { if (fail) cb(new Error(fail)); else { chunks.push(c as Buffer); cb(); } } }),
  };
}

// The PostgreSQL store's COPY path: DuckDB writes CSV into a named pipe while the COPY stream reads it.
describe('CSV pipe from the engine into a COPY stream', { timeout: 60_000 }, () => {
  let tmp: TmpDir;
  let engine: Awaited<ReturnType<typeof openMemoryEngine>>;
  let pipe: CsvPipe;
  before(async () => {
    tmp = await tmpDir('importer-pipe-');
    engine = await openMemoryEngine({ readableDirectory: tmp.path, memoryLimit: '256MB' });
    pipe = new CsvPipe(tmp.path);
  });
  after(async () => {
    await pipe.close();
    engine.close();
    assert.deepEqual(await readdir(tmp.path), [], 'the pipe is removed at close');
    await tmp.cleanup();
  });

  it('passes every row, none and many, in CSV as DuckDB wrote it', async () => {
    for (const n of [0, 3, 200_000]) {
      const s = sink();
      assert.equal(await pipe.pipe((p) => engine.writeCsv(`SELECT i, CASE WHEN i % 2 = 0 THEN 'a,"b"' END AS s FROM range(${n}) t(i) ORDER BY i`, p), s.stream), n);
      const lines = s.text().split('\n').filter(Boolean);
      assert.equal(lines.length, n);
      if (n === 3) assert.deepEqual(lines.sort(), ['0,"a,""b"""', '1,', '2,"a,""b"""']);
    }
  });

  it('a consumer that fails does not leave DuckDB blocked on the pipe: its error is the one thrown, and the pipe works afterwards', async () => {
    await assert.rejects(pipe.pipe((p) => engine.writeCsv('SELECT i FROM range(3000000) t(i)', p), sink('COPY refused the data').stream), /^Error: COPY refused the data$/);
    const s = sink();
    assert.equal(await pipe.pipe((p) => engine.writeCsv('SELECT 7 AS x', p), s.stream), 1);
    assert.equal(s.text(), '7\n');
  });

  it('a writer that fails, before or while writing, ends the consumer and its error is the one thrown', async () => {
    await assert.rejects(pipe.pipe((p) => engine.writeCsv('SELECT nope FROM range(10)', p), sink().stream), /Referenced column "nope" not found/);
    await assert.rejects(pipe.pipe((p) => engine.writeCsv(`SELECT CASE WHEN i = 150000 THEN error('row 150000 is bad') ELSE i END FROM range(300000) t(i)`, p), sink().stream), /row 150000 is bad/);
    assert.equal(await pipe.pipe((p) => engine.writeCsv('SELECT 1', p), sink().stream), 1);
  });
});
