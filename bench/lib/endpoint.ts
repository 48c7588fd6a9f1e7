import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { CopyObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/source/index.ts';
import { startRedis, type RedisHarness } from '../../test/helpers/redis.ts';
import { useS3rverCredentials } from '../../test/helpers/s3.ts';
import { tmpDir, type TmpDir } from '../../test/helpers/tmp.ts';

useS3rverCredentials();

export const BUCKET = 'bench';

/** The services a benchmark run needs: s3rver in a child process, a private Redis, a scratch folder. */
export interface BenchEnv {
  endpoint: string;
  redis: RedisHarness;
  tmp: TmpDir;
  s3: ReturnType<typeof createS3Client>;
  /** Places a local file as an object by writing s3rver's on-disk layout (setup only: no HTTP, instant for 1 GB). Returns its ETag. */
  seedFile(key: string, localPath: string): Promise<string>;
  /** Same for small generated contents, many at a time. */
  seedBody(key: string, body: string): Promise<string>;
  /** A real PutObject to a staging key and a CopyObject into place: the object appears at once, as on S3. */
  put(key: string, localPath: string): Promise<void>;
  /** CPU seconds (user + system) the s3rver process has used so far; NaN where /proc is missing. */
  endpointCpuSeconds(): Promise<number>;
  stop(): Promise<void>;
}

export async function startBenchEnv(): Promise<BenchEnv> {
  const tmp = await tmpDir('importer-bench-');
  const dataDir = join(tmp.path, 's3rver');
  const child: ChildProcess = spawn(process.execPath, ['--openssl-legacy-provider', '--import', 'tsx', new URL('./s3rver-process.ts', import.meta.url).pathname, dataDir, BUCKET], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code}`)));
  });
  const endpoint = `http://127.0.0.1:${JSON.parse(line).port}`;
  const redis = await startRedis();
  const s3 = createS3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, maxAttempts: 3 });
  const objectPath = (key: string) => join(dataDir, BUCKET, `${key}._S3rver_object`);
  const seed = async (key: string, md5: string, write: (path: string) => Promise<void>) => {
    await mkdir(dirname(objectPath(key)), { recursive: true });
    await write(objectPath(key));
    await writeFile(`${objectPath(key)}.md5`, md5);
    return md5;
  };
  return {
    endpoint, redis, tmp, s3,
    async seedFile(key, localPath) {
      const hash = createHash('md5');
      for await (const chunk of createReadStream(localPath)) hash.update(chunk as Buffer);
      return seed(key, hash.digest('hex'), (p) => copyFile(localPath, p));
    },
    seedBody(key, body) {
      return seed(key, createHash('md5').update(body).digest('hex'), (p) => writeFile(p, body));
    },
    async put(key, localPath) {
      const staging = `_staging/${key}`;
      await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: staging, Body: createReadStream(localPath) }));
      await s3.send(new CopyObjectCommand({ Bucket: BUCKET, Key: key, CopySource: `${BUCKET}/${staging}` }));
    },
    async endpointCpuSeconds() {
      try {
        // Fields 14 and 15 of /proc/<pid>/stat (utime, stime), in clock ticks of 1/100 s on Linux.
        const fields = (await readFile(`/proc/${child.pid}/stat`, 'utf8')).split(') ')[1].split(' ');
        return (Number(fields[11]) + Number(fields[12])) / 100;
      } catch {
        return Number.NaN;
      }
    },
    async stop() {
      s3.destroy();
      child.kill('SIGTERM');
      await redis.stop();
      await tmp.cleanup();
    },
  };
}
