//! Transactions over a link: request/response matching, timeouts, retries, working counters.
