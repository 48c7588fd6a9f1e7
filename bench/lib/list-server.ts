/**
 * A minimal S3-compatible endpoint for the discovery benchmark (part 4) only, never for tests:
 * ListObjectsV2 answered from a sorted in-memory array of keys, plus GET/HEAD of the few objects a
 * benchmark adds (with If-Match). s3rver walks its folders and reads two files per object, about
 * 100 ms per 1000-key page on these cores, and would take hours to fill with a million objects;
 * this answers a page in a few milliseconds, so what is measured is the daemon's side (the SDK,
 * the diff, the ledger) plus the requests' round trips, as against S3. Runs in its own process
 * (`list-server-process.ts`), so it does not share the daemon's event loop.
 */
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';

/** The body of every seeded object (a one-row CSV) and its ETag. */
export const SEEDED_BODY = 'prediction_id,score\nx,0.5\n';
export const SEEDED_ETAG = createHash('md5').update(SEEDED_BODY).digest('hex');

/**
 * `count` keys in `dt=YYYY-MM-DD/hour=HH/` folders, 1000 a day, the last day being `lastDay`
 * (so the newest partitions are recent), sorted.
 */
export function partitionedKeys(prefix: string, count: number, lastDay: number): string[] {
  const days = Math.ceil(count / 1000);
  return Array.from({ length: count }, (_, i) => {
    const day = new Date(lastDay - (days - 1 - Math.floor(i / 1000)) * 86_400_000).toISOString().slice(0, 10);
    return `${prefix}dt=${day}/hour=${String(i % 24).padStart(2, '0')}/part-${String(i).padStart(7, '0')}.csv`;
  }).sort();
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** First index whose key is > `after` (or >= `from`). */
function lowerBound(keys: string[], probe: string, strict: boolean): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid] < probe || (strict && keys[mid] === probe)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Serves `keys` (sorted, ASCII: JavaScript's order is S3's then) of bucket `bucket`; `POST /_add` adds objects ({key, body}[]). */
export function listServer(bucket: string, keys: string[]): Server {
  const bodies = new Map<string, { body: string; etag: string }>();
  const modified = new Date().toISOString();
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'POST' && url.pathname === '/_add') {
      let text = '';
      req.on('data', (c) => (text += c));
      req.on('end', () => {
        for (const o of JSON.parse(text) as Array<{ key: string; body: string }>) {
          const at = lowerBound(keys, o.key, false);
          if (keys[at] !== o.key) keys.splice(at, 0, o.key);
          bodies.set(o.key, { body: o.body, etag: createHash('md5').update(o.body).digest('hex') });
        }
        res.end('ok');
      });
      return;
    }
    const path = decodeURIComponent(url.pathname.slice(1));
    if (req.method === 'GET' && (path === bucket || path === `${bucket}/`) && url.searchParams.get('list-type') === '2') {
      const prefix = url.searchParams.get('prefix') ?? '';
      const token = url.searchParams.get('continuation-token');
      const after = token ? Buffer.from(token, 'base64url').toString() : url.searchParams.get('start-after');
      const max = Math.min(1000, Number(url.searchParams.get('max-keys') ?? 1000));
      let i = after && after >= prefix ? lowerBound(keys, after, true) : lowerBound(keys, prefix, false);
      const page: string[] = [];
      for (; i < keys.length && page.length < max && keys[i].startsWith(prefix); i++) page.push(keys[i]);
      const truncated = i < keys.length && keys[i].startsWith(prefix);
      const contents = page.map((k) => {
        const o = bodies.get(k);
        return `<Contents><Key>${xml(k)}</Key><LastModified>${modified}</LastModified><ETag>&quot;${o?.etag ?? SEEDED_ETAG}&quot;</ETag><Size>${(o?.body ?? SEEDED_BODY).length}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
      });
      res.setHeader('content-type', 'application/xml');
      res.end(
        `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name><Prefix>${xml(prefix)}</Prefix>` +
          `<KeyCount>${page.length}</KeyCount><MaxKeys>${max}</MaxKeys><IsTruncated>${truncated}</IsTruncated>` +
          (truncated ? `<NextContinuationToken>${Buffer.from(page[page.length - 1]).toString('base64url')}</NextContinuationToken>` : '') +
          `${contents.join('')}</ListBucketResult>`,
      );
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && path.startsWith(`${bucket}/`)) {
      const key = path.slice(bucket.length + 1);
      const known = lowerBound(keys, key, false);
      const o = bodies.get(key) ?? (keys[known] === key ? { body: SEEDED_BODY, etag: SEEDED_ETAG } : undefined);
      if (!o) {
        res.statusCode = 404;
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>`);
        return;
      }
      const ifMatch = req.headers['if-match'];
      if (ifMatch && ifMatch.replace(/"/g, '') !== o.etag) {
        res.statusCode = 412;
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code><Message>etag</Message></Error>`);
        return;
      }
      res.setHeader('etag', `"${o.etag}"`);
      res.setHeader('content-length', Buffer.byteLength(o.body));
      res.setHeader('last-modified', new Date(modified).toUTCString());
      res.end(req.method === 'HEAD' ? undefined : o.body);
      return;
    }
    res.statusCode = 501;
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>${xml(`${req.method} ${url.pathname}`)}</Message></Error>`);
  });
}
