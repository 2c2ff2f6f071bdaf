-- Webhook delivery of email and push notifications (release 3).

-- The delivery worker's queue: due `queued` rows in next_attempt_at order.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE status = 'queued';

-- Dead letters, for the admin listing (paginated by id).
CREATE INDEX notifications_dead ON notifications (id) WHERE status = 'dead';

-- Release 1 never queued anything, but a queued row without a due time would never be picked.
UPDATE notifications SET next_attempt_at = created_at
    WHERE status = 'queued' AND next_attempt_at IS NULL;
