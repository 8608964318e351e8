-- deliveries_due_idx (next_attempt_at) served no query the claim needs and, on a table
-- whose statistics are missing or stale, the planner picked it for the per-subscription
-- lookups of claim_deliveries: make bench on a server with autovacuum off saw each claim walk
-- 15,000 due rows of other subscriptions to take four. Every reader of pending deliveries
-- now has one index that fits: per subscription unordered (deliveries_due_by_subscription_idx)
-- or ordered (deliveries_ordered_idx).
DROP INDEX {{schema}}.deliveries_due_idx;
