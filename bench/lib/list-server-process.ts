/**
 * The discovery benchmark's listing endpoint (`list-server.ts`) in its own process, holding `count`
 * date-partitioned keys under `prefix`; prints `{"port": N}` once it listens.
 */
import { listServer, partitionedKeys } from './list-server.ts';

const [bucket, prefix, count, lastDay] = process.argv.slice(2);
const server = listServer(bucket, partitionedKeys(prefix, Number(count), Number(lastDay)));
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (server.address() as { port: number }).port })));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
