//! Register access to one terminal by configured station address, as the layers above the transport need it.
