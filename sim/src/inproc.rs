//! The in-process mode: a simulated bus behind a pair of channels, for unit tests.
