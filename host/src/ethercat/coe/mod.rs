//! CANopen over EtherCAT: SDO upload/download, SDO information, emergencies.
