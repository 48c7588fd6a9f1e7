/**
 * s3rver in its own process, so the S3 endpoint does not share the event loop (or the core) of
 * the daemon being measured. Started by `startEndpoint`; prints `{"port": N}` once it listens.
 * Needs --openssl-legacy-provider: s3rver's continuation tokens use DES.
 */
import { createRequire } from 'node:module';

const S3rver = createRequire(import.meta.url)('s3rver');
const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: bucket }] });
const { port } = await server.run();
console.log(JSON.stringify({ port }));
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
