import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { deltaUnreadable } from './errors.ts';
import { decodeDeltaPath } from './paths.ts';
import type { DeletionVectorDescriptor } from './types.ts';

/**
 * Deletion vectors (Delta protocol, "Deletion Vector Format"): a RoaringBitmapArray of the row
 * indexes deleted from one data file, stored inline (Z85) or in a `.bin` file next to the data.
 */

const Z85_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_VALUES = new Map([...Z85_ALPHABET].map((c, i) => [c, i]));

/** Magic number of the "portable" RoaringBitmapArray serialization, the one the protocol specifies. */
const PORTABLE_MAGIC = 1681511377;
/** Magic number of the older "native" serialization, which the protocol does not specify. */
const NATIVE_MAGIC = 1681511376;
const SERIAL_COOKIE_NO_RUNCONTAINER = 12346;
const SERIAL_COOKIE = 12347;
const NO_OFFSET_THRESHOLD = 4;
const MAX_ARRAY_CONTAINER = 4096;

/**
 * Decodes Delta's Z85 variant: every 5 characters are one big-endian 32-bit word. The input length
 * must be a multiple of 5 (writers pad the data to whole words); `outputLength` trims the padding.
 */
export function decodeZ85(text: string, outputLength?: number): Uint8Array {
  if (text.length % 5 !== 0) throw deltaUnreadable(`invalid Z85 text: length ${text.length} is not a multiple of 5`);
  const out = new Uint8Array((text.length / 5) * 4);
  for (let block = 0; block < text.length / 5; block++) {
    let value = 0;
    for (let i = 0; i < 5; i++) {
      const digit = Z85_VALUES.get(text[block * 5 + i]);
      if (digit === undefined) throw deltaUnreadable(`invalid Z85 text: unexpected character ${JSON.stringify(text[block * 5 + i])}`);
      // Wraps at 32 bits like Delta's reference codec (Java int arithmetic): writers pad the last
      // block with whatever that codec produces, so strict Z85 would reject DVs Delta itself reads.
      value = (value * 85 + digit) % 2 ** 32;
    }
    new DataView(out.buffer).setUint32(block * 4, value, false);
  }
  if (outputLength === undefined) return out;
  if (outputLength > out.length) throw deltaUnreadable(`inline deletion vector holds ${out.length} bytes, sizeInBytes says ${outputLength}`);
  return out.subarray(0, outputLength);
}

/**
 * The file a `u` deletion vector lives in, relative to the table root: the last 20 characters are the
 * Z85-encoded UUID, anything before them is a random directory prefix.
 */
export function deletionVectorRelativePath(pathOrInlineDv: string): string {
  if (pathOrInlineDv.length < 20) throw deltaUnreadable(`invalid deletion vector id ${JSON.stringify(pathOrInlineDv)}`);
  const prefix = pathOrInlineDv.slice(0, -20);
  const hex = Buffer.from(decodeZ85(pathOrInlineDv.slice(-20))).toString('hex');
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return `${prefix ? `${prefix}/` : ''}deletion_vector_${uuid}.bin`;
}

/** The path to pass to `fetch` for a file-stored deletion vector (`u` or `p`); undefined for inline ones. */
export function deletionVectorFilePath(dv: DeletionVectorDescriptor): string | undefined {
  if (dv.storageType === 'i') return undefined;
  if (dv.storageType === 'u') return deletionVectorRelativePath(dv.pathOrInlineDv);
  if (dv.storageType === 'p') return decodeDeltaPath(dv.pathOrInlineDv);
  throw deltaUnreadable(`unsupported deletion vector storage type ${JSON.stringify(dv.storageType)}`);
}

/** A unique id of a DV within a table (the protocol's `uniqueId`), part of the key of a file action. */
export function deletionVectorUniqueId(dv: DeletionVectorDescriptor | undefined): string {
  if (!dv) return '';
  return `${dv.storageType}${dv.pathOrInlineDv}${dv.offset === undefined ? '' : `@${dv.offset}`}`;
}

/**
 * Parses a serialized RoaringBitmapArray (magic number, bitmap count, then per bitmap its high 32 bits
 * and a 32-bit roaring bitmap in the portable format) into sorted row indexes.
 */
export function parseRoaringBitmapArray(bytes: Uint8Array): number[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n: number) => {
    if (pos + n > bytes.length) throw deltaUnreadable(`deletion vector is truncated (needs ${pos + n} bytes, has ${bytes.length})`);
  };
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));

  const magic = u32();
  if (magic === NATIVE_MAGIC) throw deltaUnreadable('deletion vector uses the native RoaringBitmapArray serialization, which is not supported');
  if (magic !== PORTABLE_MAGIC) throw deltaUnreadable(`deletion vector has an unknown magic number ${magic}`);
  need(8);
  const bitmapCount = Number(view.getBigUint64(pos, true));
  pos += 8;

  const values: number[] = [];
  for (let b = 0; b < bitmapCount; b++) {
    const high = u32() * 2 ** 32;
    const cookie = u32();
    let size: number;
    let runFlags: Uint8Array | undefined;
    if ((cookie & 0xffff) === SERIAL_COOKIE) {
      size = (cookie >>> 16) + 1;
      const flagBytes = Math.ceil(size / 8);
      need(flagBytes);
      runFlags = bytes.subarray(pos, pos + flagBytes);
      pos += flagBytes;
    } else if (cookie === SERIAL_COOKIE_NO_RUNCONTAINER) {
      size = u32();
    } else {
      throw deltaUnreadable(`deletion vector has an invalid roaring cookie ${cookie}`);
    }
    const keys: number[] = [];
    const cardinalities: number[] = [];
    for (let c = 0; c < size; c++) {
      keys.push(u16());
      cardinalities.push(u16() + 1);
    }
    // Container offsets: redundant when reading sequentially, so skipped.
    if (!runFlags || size >= NO_OFFSET_THRESHOLD) {
      need(4 * size);
      pos += 4 * size;
    }
    for (let c = 0; c < size; c++) {
      const base = high + keys[c] * 65536;
      const before = values.length;
      const isRun = runFlags !== undefined && (runFlags[c >> 3] & (1 << (c & 7))) !== 0;
      if (isRun) {
        const runs = u16();
        for (let r = 0; r < runs; r++) {
          const start = u16();
          const length = u16();
          for (let v = start; v <= start + length; v++) values.push(base + v);
        }
      } else if (cardinalities[c] <= MAX_ARRAY_CONTAINER) {
        for (let i = 0; i < cardinalities[c]; i++) values.push(base + u16());
      } else {
        need(8192);
        for (let word = 0; word < 2048; word++) {
          let bits = view.getUint32(pos + word * 4, true);
          while (bits !== 0) {
            const bit = 31 - Math.clz32(bits & -bits);
            values.push(base + word * 32 + bit);
            bits &= bits - 1;
          }
        }
        pos += 8192;
      }
      if (values.length - before !== cardinalities[c]) {
        throw deltaUnreadable(`deletion vector container ${keys[c]} holds ${values.length - before} values, its header says ${cardinalities[c]}`);
      }
    }
  }
  return values;
}

/** Reads the serialized bitmap of a file-stored DV: `size` (int32 BE) at `offset`, the bitmap, its CRC-32 (BE). */
async function readStoredBitmap(localPath: string, dv: DeletionVectorDescriptor): Promise<Uint8Array> {
  // The first byte of a DV file is its format version; the first DV starts right after it.
  const offset = dv.offset ?? 1;
  const handle = await open(localPath, 'r');
  try {
    const buf = Buffer.alloc(dv.sizeInBytes + 8);
    const { bytesRead } = await handle.read(buf, 0, buf.length, offset);
    if (bytesRead < buf.length) throw deltaUnreadable(`deletion vector file ${dv.pathOrInlineDv} is truncated at offset ${offset}`);
    const size = buf.readUInt32BE(0);
    if (size !== dv.sizeInBytes) throw deltaUnreadable(`deletion vector at offset ${offset} has ${size} bytes, the log says ${dv.sizeInBytes}`);
    const data = buf.subarray(4, 4 + size);
    const checksum = buf.readUInt32BE(4 + size);
    if (crc32(data) !== checksum) throw deltaUnreadable(`deletion vector at offset ${offset} fails its checksum`);
    return data;
  } finally {
    await handle.close();
  }
}

/**
 * Decodes a deletion vector to the sorted indexes of the rows it deletes (0-based positions in the data
 * file). `fetch` is only called for file-stored DVs. Throws when the decoded count differs from
 * `cardinality`: a mismatch means the DV or the log is broken, and reading on would return wrong rows.
 */
export async function decodeDeletionVector(dv: DeletionVectorDescriptor, fetch: (relPath: string) => Promise<string>): Promise<number[]> {
  const filePath = deletionVectorFilePath(dv);
  const bytes = filePath === undefined ? decodeZ85(dv.pathOrInlineDv, dv.sizeInBytes) : await readStoredBitmap(await fetch(filePath), dv);
  const rows = parseRoaringBitmapArray(bytes);
  if (rows.length !== dv.cardinality) {
    throw deltaUnreadable(`deletion vector ${dv.storageType}:${dv.pathOrInlineDv} holds ${rows.length} row indexes, its cardinality says ${dv.cardinality}`);
  }
  return rows;
}

/** Collapses sorted row indexes into inclusive [start, end] runs (a compact form for SQL). */
export function toRanges(sortedRows: readonly number[]): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  for (const row of sortedRows) {
    const last = ranges[ranges.length - 1];
    if (last && row === last[1] + 1) last[1] = row;
    else if (!last || row > last[1]) ranges.push([row, row]);
  }
  return ranges;
}
