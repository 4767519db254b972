//! The mailbox protocol: headers, counters, repeat requests, timeouts.
