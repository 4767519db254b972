//! A chain of terminals processing each frame in order, as on the wire.
