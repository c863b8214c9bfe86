-- A run's jobs per status, kept by the database (see
-- 0012_run_job_counts.sql for SQLite, and why). On PostgreSQL each
-- statement that inserts, updates or deletes jobs appends its net change
-- per (run, status) from its transition tables; nothing is updated in
-- place, so concurrent writers never wait on each other here. A run's
-- counts are the sums of its rows: a few rows per batch that touched it.
CREATE TABLE run_job_counts (
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL
);
CREATE INDEX run_job_counts_run ON run_job_counts (run_id);

INSERT INTO run_job_counts (run_id, status, n)
    SELECT run_id, status, COUNT(*) FROM jobs GROUP BY run_id, status;

CREATE FUNCTION jobs_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_job_counts (run_id, status, n)
        SELECT run_id, status, COUNT(*) FROM inserted_jobs GROUP BY run_id, status;
    RETURN NULL;
END $$;

CREATE FUNCTION jobs_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_job_counts (run_id, status, n)
        SELECT run_id, status, SUM(d) FROM (
            SELECT run_id, status, -1 AS d FROM old_jobs
            UNION ALL
            SELECT run_id, status, 1 AS d FROM new_jobs
        ) changed
        GROUP BY run_id, status
        HAVING SUM(d) <> 0;
    RETURN NULL;
END $$;

CREATE FUNCTION jobs_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO run_job_counts (run_id, status, n)
        SELECT run_id, status, -COUNT(*) FROM deleted_jobs GROUP BY run_id, status;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_inserted();

CREATE TRIGGER jobs_counted_on_update AFTER UPDATE ON jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_updated();

CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs
    REFERENCING OLD TABLE AS deleted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION jobs_count_deleted();
