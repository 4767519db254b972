//! bpffs: finding or mounting it, pinning objects and opening pinned ones.
