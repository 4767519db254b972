//! Bring-up of a bus: counting terminals, addresses, topology, states, distributed clocks.
