export { createS3Client, parseS3Url, isSideFile, listObjects, listSource, describeTarget, type SourceTarget, type SourceListing, downloadObject, downloadParts, objectUri, type DownloadParts, type ListOptions, tooLarge, type DownloadOutcome } from './s3.ts';
export { eligibleObjects } from './eligible.ts';
export type { ListedObject } from './types.ts';
export { createS3Clients, jobAccess, type S3Access } from './s3-access.ts';
export { oldPartitionRanges, partitionDay, type SkippedRange } from './partitions.ts';
