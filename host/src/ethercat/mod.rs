//! The EtherCAT master: wire format, transport, SII, mailbox and CoE, bring-up.
