/**
 * The piece store: content-addressed pieces on disk, outside LevelDB, with
 * their metadata in LevelDB (docs/storage.md).
 */
export { DiskPieceStore, DEFAULT_PIECE_CAPACITY, PIECE_ID, checkPieceId } from './disk.js'
export { MemoryPieceStore } from './memory.js'
export { InsufficientStorageError, PieceDamagedError } from './errors.js'
export { migrateLevelBlobs } from './migrate.js'
export type { DiskPieceStoreInit } from './disk.js'
export type { MemoryPieceStoreInit } from './memory.js'
export type { MigrationResult } from './migrate.js'
export type { PieceStore, PieceUsage, PutOptions } from './types.js'
