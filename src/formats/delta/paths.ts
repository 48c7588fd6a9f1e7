/**
 * Paths in the log (`add.path`, `remove.path`, sidecar paths, `p` deletion vectors) are URL-encoded
 * (`%25`, `%3A`, `%20`): decoded exactly once they name the real file. A path that is not valid
 * percent-encoding was written unencoded and is kept as is.
 */
export function decodeDeltaPath(path: string): string {
  try {
    return decodeURIComponent(path);
  } catch {
    return path;
  }
}

/** `s3://…`, `file:/…`, `abfss://…`: a path that does not lie under the table root. */
export function isAbsoluteUri(path: string): boolean {
  return /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(path);
}
