export { createS3Client, parseS3Url, isSideFile, listObjects, downloadObject, type ListOptions, tooLarge, type DownloadOutcome } from './s3.ts';
