import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { closeSync, constants, createReadStream, open as openCb } from 'node:fs';
import { rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { Mutex } from '../../util/mutex.ts';

const openFd = promisify(openCb) as (path: string, flags: number) => Promise<number>;
const run = promisify(execFile);

/**
 * Moves CSV that DuckDB writes into a consumer (a `COPY … FROM STDIN` stream) while DuckDB is still
 * writing it, through a named pipe in the downloads folder: DuckDB's CSV writer and PostgreSQL's COPY
 * then run at the same time on different cores, and the rows never sit on disk. Where no named pipe
 * can be made (`mkfifo` is in coreutils, so in every Debian-based image), the CSV goes through a
 * file first: the same rows, one step after the other.
 *
 * Both sides always finish: a failed consumer leaves a reader that drains the pipe, so DuckDB never
 * blocks on a pipe nobody reads, and a failed writer closes the pipe, so the consumer sees its end.
 */
export class CsvPipe {
  private fifo?: Promise<string | undefined>;
  private readonly turn = new Mutex();

  constructor(private readonly dir: string) {}

  /** `write(path)` runs DuckDB's COPY … TO path and returns its row count; `sink` consumes the bytes. */
  pipe(write: (path: string) => Promise<number>, sink: () => Writable): Promise<number> {
    // One pipe per store, made once, used by one COPY at a time.
    this.fifo ??= (async () => {
      const path = join(this.dir, `copy-${randomUUID()}.pipe`);
      return run('mkfifo', ['-m', '600', path]).then(() => path, () => undefined);
    })();
    return this.turn.run(async () => {
      const fifo = await this.fifo;
      return fifo ? this.through(fifo, write, sink) : this.viaFile(write, sink);
    });
  }

  async close(): Promise<void> {
    const fifo = await this.fifo;
    if (fifo) await rm(fifo, { force: true });
  }

  private async through(fifo: string, write: (path: string) => Promise<number>, sink: () => Writable): Promise<number> {
    // Non-blocking opens of both ends: the reader opens at once, and our own writer end keeps the
    // reader from seeing an end of file before DuckDB has opened the pipe (or after it failed to).
    const readFd = await openFd(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const holdFd = await openFd(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const reader: Readable = new Socket({ fd: readFd, readable: true, writable: false });
    let drain: Socket | undefined;
    const written = write(fifo).finally(() => closeSync(holdFd));
    const consumed = pipeline(reader, sink()).catch(async (err: unknown) => {
      // The consumer stopped: keep a reader on the pipe until DuckDB is done with it.
      drain = new Socket({ fd: await openFd(fifo, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
      drain.resume();
      throw err;
    });
    const [w, c] = await Promise.allSettled([written, consumed]);
    if (drain) await new Promise((resolve) => drain!.once('close', resolve).destroy());
    // A consumer that failed first is the cause: DuckDB then fails on the closed pipe.
    if (c.status === 'rejected') throw c.reason;
    if (w.status === 'rejected') throw w.reason;
    return w.value;
  }

  private async viaFile(write: (path: string) => Promise<number>, sink: () => Writable): Promise<number> {
    const path = join(this.dir, `copy-${randomUUID()}.csv`);
    try {
      const n = await write(path);
      if (n > 0) await pipeline(createReadStream(path), sink());
      return n;
    } finally {
      await rm(path, { force: true });
    }
  }
}
