//! XDP: attaching programs to interfaces through BPF links, replacing and detaching them.
