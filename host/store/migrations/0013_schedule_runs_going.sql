-- A schedule's runs still going, for the scheduler: a schedule fires ahead
-- of its time only while none of its runs is going (see
-- `Store::claim_due_schedules`), and the overlap policy asks the same.
CREATE INDEX runs_going_of_schedule ON runs (schedule_id) WHERE status = 'running';
