-- The webhooks an outbox event has reached: each took it, or refused it
-- for good. A redelivery sends the event only to the matching webhooks not
-- listed here; the rows go with their event when it leaves the outbox.
CREATE TABLE alert_outbox_reached (
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    PRIMARY KEY (alert_id, event, webhook_id)
);
