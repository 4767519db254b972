//! Network namespaces and veth pairs for `ferrocat-sim up` and `down`.
