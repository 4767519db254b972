//! A CoE server on a simulated terminal's mailbox: SDOs, SDO information, emergencies.
