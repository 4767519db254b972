//! Fault injection, switchable at run time: lost, corrupt and delayed frames, silent or failing terminals, link down.
