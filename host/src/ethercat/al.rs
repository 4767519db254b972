//! The AL state machine of a terminal: requesting states, waiting, decoding AL status codes.
