//! Capture of the frames this process sends and receives, written as pcapng.
