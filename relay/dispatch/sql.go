package dispatch

// claimAndFanOut claims up to $1 undispatched outbox rows, marks them and inserts their
// deliveries, all in one statement, and answers (events claimed, deliveries created); see
// claim_and_fan_out in outbox/functions/claim_and_fan_out.sql for its rules.
const claimAndFanOut = `SELECT events, deliveries FROM {{schema}}.claim_and_fan_out($1)`
