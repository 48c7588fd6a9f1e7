export { createS3Client, parseS3Url, isSideFile, listObjects, downloadObject, downloadParts, type DownloadParts, type ListOptions, tooLarge, type DownloadOutcome } from './s3.ts';
