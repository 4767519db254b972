//! The fragment format: what a plugin hands to the host's linker.
