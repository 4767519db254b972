//! The EtherCAT frame and datagram format, as zero-copy views and owned representations.
