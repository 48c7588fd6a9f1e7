export { connectWarehouse, describeSql, dialectOf, isSqlJob, s3Location, sourceLabel, warehouseError, type SqlJob, type Warehouse } from './connection.ts';
export { describeQuery, queryToCsv, subquery, windowRelation, windowSelect, type QueryColumn } from './query.ts';
export { nextWindows, parseWindowKey, QUERY_KEY, refreshEntry, SQL_BUCKET, windowEntry, windowKey, type CursorWindow } from './windows.ts';
export { RedshiftLogins, type IamLogin, type IamTarget } from './iam.ts';
