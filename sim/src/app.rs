//! The firmware side of a simulated terminal: what the ESC hands to the application (mailbox, process data, state checks).
