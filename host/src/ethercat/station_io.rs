//! Register access to one terminal by configured station address, as the layers above the transport need it.
//!
//! The SII reader, the mailbox and CoE client and the process-data configuration are
//! generic over [`StationIo`], so they run unchanged over the real transport (FPRD/FPWR
//! datagrams, ETG.1000.4 §5.4.1.2) and over in-memory register spaces in unit tests.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why a register access to one terminal failed before a working counter came back.
#[derive(Debug, thiserror::Error)]
pub enum StationIoError {
    /// No reply arrived in time (after the transport's own retries).
    #[error(
        "no reply from terminal {station:#06x} for register {register:#06x} within {timeout:?}"
    )]
    Timeout {
        /// Configured station address of the terminal.
        station: u16,
        /// ESC register address of the access.
        register: u16,
        /// How long the transport waited in total.
        timeout: Duration,
    },
    /// The transport is shut down and carries no more frames.
    #[error("the EtherCAT transport is closed")]
    Closed,
    /// The access does not fit one datagram, or addresses past the 64 KiB ESC space.
    #[error("register access {register:#06x}+{len} to terminal {station:#06x} is out of range")]
    OutOfRange {
        /// Configured station address of the terminal.
        station: u16,
        /// ESC register address of the access.
        register: u16,
        /// Length of the access in bytes.
        len: usize,
    },
    /// Any other transport failure (socket error, malformed reply), with its cause.
    #[error("transport error on terminal {station:#06x} register {register:#06x}: {source}")]
    Transport {
        /// Configured station address of the terminal.
        station: u16,
        /// ESC register address of the access.
        register: u16,
        /// The underlying error of the transport.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A register access whose reply came back with an unexpected working counter.
///
/// An FPRD/FPWR addressed to one terminal returns 1 when that terminal handled it and 0
/// when no terminal with that station address exists (ETG.1000.4 §5.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{access} of register {register:#06x} on terminal {station:#06x}: working counter {got}, expected {expected}"
)]
pub struct WorkingCounterError {
    /// Whether the access was a read or a write.
    pub access: Access,
    /// Configured station address of the terminal.
    pub station: u16,
    /// ESC register address of the access.
    pub register: u16,
    /// Working counter that was expected.
    pub expected: u16,
    /// Working counter that came back.
    pub got: u16,
}

/// Direction of a register access, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A read (FPRD).
    Read,
    /// A write (FPWR).
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// Error of a checked register access: the transport failed or the terminal did not answer.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] StationIoError),
    /// The terminal did not handle the datagram (working counter 0): it is gone or
    /// has a different station address.
    #[error(transparent)]
    WorkingCounter(#[from] WorkingCounterError),
}

/// Register access to terminals by configured station address (FPRD / FPWR).
///
/// Implementations return the working counter of the datagram; checking it is the
/// caller's business (see [`StationIoExt`]). A read fills all of `buf` or fails.
pub trait StationIo: Send + Sync {
    /// Reads `buf.len()` bytes starting at ESC address `register` of terminal `station`.
    fn read(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send;

    /// Writes `data` starting at ESC address `register` of terminal `station`.
    fn write(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send;
}

impl<T: StationIo + ?Sized> StationIo for &T {
    fn read(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        (**self).read(station, register, buf)
    }

    fn write(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        (**self).write(station, register, data)
    }
}

impl<T: StationIo + ?Sized> StationIo for Arc<T> {
    fn read(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        (**self).read(station, register, buf)
    }

    fn write(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
        (**self).write(station, register, data)
    }
}

/// Checked register accesses: the working counter must be exactly 1.
pub trait StationIoExt: StationIo {
    /// Reads `buf.len()` bytes and fails unless the terminal answered (working counter 1).
    fn read_checked(
        &self,
        station: u16,
        register: u16,
        buf: &mut [u8],
    ) -> impl Future<Output = Result<(), RegisterError>> + Send {
        async move {
            let wkc = self.read(station, register, buf).await?;
            check_wkc(Access::Read, station, register, wkc)
        }
    }

    /// Writes `data` and fails unless the terminal answered (working counter 1).
    fn write_checked(
        &self,
        station: u16,
        register: u16,
        data: &[u8],
    ) -> impl Future<Output = Result<(), RegisterError>> + Send {
        async move {
            let wkc = self.write(station, register, data).await?;
            check_wkc(Access::Write, station, register, wkc)
        }
    }

    /// Reads a little-endian `u8` register.
    fn read_u8(
        &self,
        station: u16,
        register: u16,
    ) -> impl Future<Output = Result<u8, RegisterError>> + Send {
        async move {
            let mut b = [0u8; 1];
            self.read_checked(station, register, &mut b).await?;
            Ok(b[0])
        }
    }

    /// Reads a little-endian `u16` register.
    fn read_u16(
        &self,
        station: u16,
        register: u16,
    ) -> impl Future<Output = Result<u16, RegisterError>> + Send {
        async move {
            let mut b = [0u8; 2];
            self.read_checked(station, register, &mut b).await?;
            Ok(u16::from_le_bytes(b))
        }
    }

    /// Reads a little-endian `u32` register.
    fn read_u32(
        &self,
        station: u16,
        register: u16,
    ) -> impl Future<Output = Result<u32, RegisterError>> + Send {
        async move {
            let mut b = [0u8; 4];
            self.read_checked(station, register, &mut b).await?;
            Ok(u32::from_le_bytes(b))
        }
    }

    /// Writes a little-endian `u16` register.
    fn write_u16(
        &self,
        station: u16,
        register: u16,
        value: u16,
    ) -> impl Future<Output = Result<(), RegisterError>> + Send {
        async move {
            self.write_checked(station, register, &value.to_le_bytes())
                .await
        }
    }
}

impl<T: StationIo + ?Sized> StationIoExt for T {}

fn check_wkc(access: Access, station: u16, register: u16, wkc: u16) -> Result<(), RegisterError> {
    if wkc == 1 {
        Ok(())
    } else {
        Err(WorkingCounterError {
            access,
            station,
            register,
            expected: 1,
            got: wkc,
        }
        .into())
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory ESC register space of one terminal, for unit tests of the layers
    //! above the transport. Hooks let a test model register side effects (the EEPROM
    //! interface, mailbox SyncManagers) without a simulator.

    use super::{StationIo, StationIoError};
    use std::future::Future;
    use std::sync::Mutex;

    /// Side effects of register accesses, run under the register-space lock.
    pub(crate) trait Hooks: Send {
        /// Called after `data` was written at `register` into `regs`.
        fn after_write(&mut self, regs: &mut [u8], register: u16, len: usize);
        /// Called before `len` bytes at `register` are read from `regs`.
        fn before_read(&mut self, regs: &mut [u8], register: u16, len: usize);
    }

    /// No side effects: plain memory.
    pub(crate) struct NoHooks;
    impl Hooks for NoHooks {
        fn after_write(&mut self, _: &mut [u8], _: u16, _: usize) {}
        fn before_read(&mut self, _: &mut [u8], _: u16, _: usize) {}
    }

    /// One terminal with a 64 KiB register space at station address `station`.
    pub(crate) struct FakeStation<H> {
        pub(crate) station: u16,
        pub(crate) inner: Mutex<(Vec<u8>, H)>,
    }

    impl<H: Hooks> FakeStation<H> {
        pub(crate) fn new(station: u16, hooks: H) -> Self {
            Self {
                station,
                inner: Mutex::new((vec![0; 0x1_0000], hooks)),
            }
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Vec<u8>, &mut H) -> R) -> R {
            let mut g = self.inner.lock().expect("fake lock");
            let (regs, hooks) = &mut *g;
            f(regs, hooks)
        }
    }

    impl<H: Hooks> StationIo for FakeStation<H> {
        fn read(
            &self,
            station: u16,
            register: u16,
            buf: &mut [u8],
        ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
            let r = if station != self.station {
                Ok(0)
            } else if register as usize + buf.len() > 0x1_0000 {
                Err(StationIoError::OutOfRange {
                    station,
                    register,
                    len: buf.len(),
                })
            } else {
                self.with(|regs, hooks| {
                    hooks.before_read(regs, register, buf.len());
                    let start = register as usize;
                    buf.copy_from_slice(&regs[start..start + buf.len()]);
                });
                Ok(1)
            };
            std::future::ready(r)
        }

        fn write(
            &self,
            station: u16,
            register: u16,
            data: &[u8],
        ) -> impl Future<Output = Result<u16, StationIoError>> + Send {
            let r = if station != self.station {
                Ok(0)
            } else if register as usize + data.len() > 0x1_0000 {
                Err(StationIoError::OutOfRange {
                    station,
                    register,
                    len: data.len(),
                })
            } else {
                self.with(|regs, hooks| {
                    let start = register as usize;
                    regs[start..start + data.len()].copy_from_slice(data);
                    hooks.after_write(regs, register, data.len());
                });
                Ok(1)
            };
            std::future::ready(r)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeStation, NoHooks};
    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn checked_access_reports_missing_terminal() {
        let fake = FakeStation::new(0x1001, NoHooks);
        block_on(async {
            fake.write_u16(0x1001, 0x0120, 0x0002).await.expect("write");
            assert_eq!(fake.read_u16(0x1001, 0x0120).await.expect("read"), 2);
            let err = fake.read_u16(0x1002, 0x0130).await.unwrap_err();
            match err {
                RegisterError::WorkingCounter(e) => {
                    assert_eq!(e.station, 0x1002);
                    assert_eq!(e.register, 0x0130);
                    assert_eq!(e.got, 0);
                    assert_eq!(
                        e.to_string(),
                        "read of register 0x0130 on terminal 0x1002: working counter 0, expected 1"
                    );
                }
                other => panic!("unexpected {other:?}"),
            }
        });
    }

    #[test]
    fn out_of_range_access_is_an_error() {
        let fake = FakeStation::new(1, NoHooks);
        let mut buf = [0u8; 4];
        let err = block_on(fake.read(1, 0xFFFE, &mut buf)).unwrap_err();
        assert!(matches!(err, StationIoError::OutOfRange { len: 4, .. }));
    }
}
