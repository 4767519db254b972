//! Helpers for ferrocat's end-to-end tests: namespaces and veth pairs that clean up after
//! themselves, and paths to the shared test data.
