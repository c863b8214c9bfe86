-- A run's jobs per status, kept by the database as jobs are inserted and
-- change status, so a run's progress is read from a few rows, not counted
-- from its jobs (#18). The triggers are the one boundary every write to
-- `jobs` crosses, whichever statement makes it.
--
-- SQLite (this file): one row per (run, status), updated in place; SQLite
-- has one writer at a time, so the rows are never contended.
-- PostgreSQL (0012_run_job_counts.postgres.sql): the same table holds
-- deltas appended per statement, summed when read, so that replicas
-- completing jobs of one run never wait on (or deadlock over) shared rows.
-- Both are read as `SELECT status, SUM(n) … GROUP BY status`.
CREATE TABLE run_job_counts (
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (run_id, status)
);

INSERT INTO run_job_counts (run_id, status, n)
    SELECT run_id, status, COUNT(*) FROM jobs GROUP BY run_id, status;

CREATE TRIGGER jobs_counted_on_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO run_job_counts (run_id, status, n) VALUES (NEW.run_id, NEW.status, 1)
        ON CONFLICT (run_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_counted_on_status AFTER UPDATE OF status ON jobs
    WHEN OLD.status <> NEW.status
BEGIN
    UPDATE run_job_counts SET n = n - 1 WHERE run_id = OLD.run_id AND status = OLD.status;
    INSERT INTO run_job_counts (run_id, status, n) VALUES (NEW.run_id, NEW.status, 1)
        ON CONFLICT (run_id, status) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER jobs_counted_on_delete AFTER DELETE ON jobs BEGIN
    UPDATE run_job_counts SET n = n - 1 WHERE run_id = OLD.run_id AND status = OLD.status;
END;
