//! Serving a simulated bus on a network interface through an AF_PACKET socket.
