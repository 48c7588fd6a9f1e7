import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from './ports.ts';

const REDIS_BIN = '/usr/bin/redis-server';

/** A private, throw-away redis-server owned by one test file. */
export interface RedisHarness {
  /** Connection URL, e.g. `redis://127.0.0.1:40123`. */
  url: string;
  port: number;
  /** Deletes every key in every database. */
  flushAll(): Promise<void>;
  /** Kills the server and waits for it to exit. Safe to call more than once. */
  stop(): Promise<void>;
  /** Starts a new, empty server on the same port after stop() (a Redis restarted without persistence). */
  restart(): Promise<void>;
  /** Freezes the server (SIGSTOP): connections stay open, nothing answers, like a hung Redis. */
  freeze(): void;
  /** Lets a frozen server go on (SIGCONT). */
  thaw(): void;
}

// Kill leftovers if a test file crashes or forgets stop(): an orphaned
// redis-server would otherwise outlive the test run.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Spawns a private `redis-server` on a free loopback port, without
 * persistence, and resolves once it answers PING. It never uses the shared
 * redis on 6379, so tests can FLUSHALL freely.
 */
export async function startRedis(): Promise<RedisHarness> {
  let lastError: unknown;
  // freePort() is racy (the port may be taken before redis binds it), so retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await startOn(port);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOn(port: number): Promise<RedisHarness> {
  const child = spawn(
    REDIS_BIN,
    ['--save', '', '--appendonly', 'no', '--bind', '127.0.0.1', '--port', String(port)],
    { cwd: os.tmpdir(), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.add(child);
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  exited.then(() => running.delete(child));

  try {
    await waitForPing(port, child);
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`redis-server on port ${port} did not start: ${String(err)}\n${output}`);
  }

  let current: RedisHarness;
  return (current = {
    url: `redis://127.0.0.1:${port}`,
    port,
    async flushAll() {
      const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
      try {
        await redis.connect();
        await redis.flushall();
      } finally {
        redis.disconnect();
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
    },
    async restart() {
      await current.stop();
      // The port was just freed; another process may take it in between, so retry a little.
      for (let i = 0; ; i++) {
        try {
          const next = await startOn(port);
          Object.assign(current, { stop: next.stop, freeze: next.freeze, thaw: next.thaw, restart: current.restart });
          return;
        } catch (err) {
          if (i >= 5) throw err;
          await sleep(200);
        }
      }
    },
    freeze() {
      child.kill('SIGSTOP');
    },
    thaw() {
      child.kill('SIGCONT');
    },
  });
}

/** Polls PING until redis answers, the process exits, or 10 s pass. */
async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 10_000;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`exited early (code ${child.exitCode}, signal ${child.signalCode})`);
    }
    // One connection attempt per loop: no ioredis reconnects or offline queue,
    // so a refused connection fails fast and we poll again.
    const redis = new Redis({
      port,
      host: '127.0.0.1',
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
    });
    redis.on('error', () => {}); // expected while the server is still booting
    try {
      await redis.connect();
      if ((await redis.ping()) === 'PONG') return;
    } catch (err) {
      lastError = err;
    } finally {
      redis.disconnect();
    }
    await sleep(50);
  }
  throw new Error(`no PONG within 10 s: ${String(lastError)}`);
}
