-- Alert events not yet delivered to every webhook. An event is written in
-- the transaction that opens or closes its alert (`alert_state`), so a
-- crash between that and delivery cannot lose it; it is deleted once
-- delivered (or refused for good) everywhere. `retry_at` is when another
-- delivery may start: the recording process holds it while it delivers,
-- and the redelivery loop of any process takes it after that.
CREATE TABLE alert_outbox (
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retry_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, event)
);

CREATE INDEX alert_outbox_retry ON alert_outbox (retry_at);
