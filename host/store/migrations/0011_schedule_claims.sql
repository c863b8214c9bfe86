-- A replica's claim on a due schedule it is firing (PostgreSQL): replicas
-- take different due batches (`FOR UPDATE SKIP LOCKED`) instead of waiting
-- on each other's inserts; a claim left by a process that stopped mid-batch
-- runs out and another replica fires the schedule. NULL: not claimed.
ALTER TABLE schedules ADD COLUMN claimed_until BIGINT;
