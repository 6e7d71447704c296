/**
 * The checkpoints whose signatures `verifyCheckpoint` checked, frozen: only
 * these are trusted as expected heads by `AuditLog.verify`.
 *
 * @module
 */
export const VERIFIED_CHECKPOINTS: WeakSet<object> = new WeakSet();
