export { createS3Client, parseS3Url, isSideFile, listObjects, downloadObject, tooLarge, type DownloadOutcome } from './s3.ts';
