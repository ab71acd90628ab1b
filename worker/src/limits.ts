//! The relay limits of schemas/frame.md with the Rust relay's defaults, overridable through
//! Worker variables (wrangler `[vars]` or workerd text bindings) so tests can shrink them.

export interface LimitVars {
  MAX_FRAME_BYTES?: string | null;
  MAX_PEERS_PER_ROOM?: string | null;
  RETAINED_PER_KEY?: string | null;
  RETAINED_KEYS_PER_ROOM?: string | null;
  RETAINED_BYTES_PER_ROOM?: string | null;
  RETAINED_TTL_SECONDS?: string | null;
  RATE_LIMIT_PER_SECOND?: string | null;
  RATE_LIMIT_BURST?: string | null;
}

export interface Limits {
  maxFrameBytes: number;
  maxPeersPerRoom: number;
  retainedPerKey: number;
  retainedKeysPerRoom: number;
  /** Bytes of retained blobs and keys one room keeps; a put beyond gets ERROR 507. */
  retainedBytesPerRoom: number;
  /** A room's retained blobs are dropped this long after its last peer left. */
  retainedTtlSeconds: number;
  /** Frames per second per connection; 0 turns rate limiting off. */
  rateLimitPerSecond: number;
  rateLimitBurst: number;
}

export const DEFAULT_LIMITS: Limits = {
  maxFrameBytes: 1024 * 1024,
  // 10,000 hosts and the operators, panels and MCP nodes following them (protocol::frame).
  maxPeersPerRoom: 10_240,
  retainedPerKey: 4,
  retainedKeysPerRoom: 64,
  retainedBytesPerRoom: 16 * 1024 * 1024,
  retainedTtlSeconds: 24 * 60 * 60,
  rateLimitPerSecond: 100_000,
  rateLimitBurst: 200_000,
};

function positiveInteger(text: string | null | undefined, fallback: number, allowZero = false): number {
  if (text == null || text.trim() === "") return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0 || (value === 0 && !allowZero)) return fallback;
  return value;
}

export function limitsFrom(vars: LimitVars): Limits {
  return {
    maxFrameBytes: positiveInteger(vars.MAX_FRAME_BYTES, DEFAULT_LIMITS.maxFrameBytes),
    maxPeersPerRoom: positiveInteger(vars.MAX_PEERS_PER_ROOM, DEFAULT_LIMITS.maxPeersPerRoom),
    retainedPerKey: positiveInteger(vars.RETAINED_PER_KEY, DEFAULT_LIMITS.retainedPerKey),
    retainedKeysPerRoom: positiveInteger(
      vars.RETAINED_KEYS_PER_ROOM,
      DEFAULT_LIMITS.retainedKeysPerRoom,
    ),
    retainedBytesPerRoom: positiveInteger(
      vars.RETAINED_BYTES_PER_ROOM,
      DEFAULT_LIMITS.retainedBytesPerRoom,
    ),
    retainedTtlSeconds: positiveInteger(vars.RETAINED_TTL_SECONDS, DEFAULT_LIMITS.retainedTtlSeconds),
    rateLimitPerSecond: positiveInteger(
      vars.RATE_LIMIT_PER_SECOND,
      DEFAULT_LIMITS.rateLimitPerSecond,
      true,
    ),
    rateLimitBurst: positiveInteger(vars.RATE_LIMIT_BURST, DEFAULT_LIMITS.rateLimitBurst),
  };
}

/**
 * A token bucket per connection, with the Rust relay's rule for "persistently": more drops
 * within one second than the sustained rate (at least 1,000) closes the connection with 4029.
 * It lives in memory only: after hibernation the bucket starts full again, which is harmless
 * because a hibernated connection was idle anyway.
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;
  private windowStart = 0;
  private droppedInWindow = 0;
  private readonly persistentLimit: number;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
    this.refilledAt = Date.now();
    this.persistentLimit = Math.max(perSecond, 1000);
  }

  /** True to admit a frame; false to drop it. */
  take(now: number = Date.now()): boolean {
    if (this.perSecond === 0) return true;
    if (now > this.refilledAt) {
      this.tokens = Math.min(
        this.burst,
        this.tokens + ((now - this.refilledAt) * this.perSecond) / 1000,
      );
      this.refilledAt = now;
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    if (now - this.windowStart > 1000) {
      this.windowStart = now;
      this.droppedInWindow = 0;
    }
    this.droppedInWindow += 1;
    return false;
  }

  get persistentlyExceeded(): boolean {
    return this.droppedInWindow > this.persistentLimit;
  }
}
