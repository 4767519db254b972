//! The byte form of a [`Fragment`](super::Fragment) (`docs/fragment-abi.md`, "Format
//! version and encoding"): how fragments cross the plugin boundary.
