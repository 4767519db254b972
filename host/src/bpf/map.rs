//! eBPF maps: creation, lookup/update/delete, and host access to mmapped values.
