/** One object version as listed from S3. */
export interface ListedObject {
  bucket: string;
  key: string;
  etag: string;
  size: number;
  lastModified: Date;
}
