//! Bring-up of a bus: counting terminals, assigning station addresses (honouring
//! aliases), reading ESC information, DL status and port topology, the SII identity,
//! mailbox SyncManagers, AL state changes of all terminals and distributed clocks.
//!
//! Every step runs in a `tracing` span named after it, so `-v` on the command line shows
//! the bring-up as it happens.

use super::al::{self, AlError, AlState, AlStatus};
use super::coe::client::{CoeClient, CoeError};
use super::dc::{self, DcModeSelection, Latch, PlannedSync, SyncCandidate};
use super::mailbox::client::{Mailbox, MailboxConfig, MailboxError};
use super::pdo::{self, PdoLayout, ProcessImage, TerminalInput};
use super::registers::{self, features};
use super::sii::SiiImage;
use super::sii::category::Identity;
use super::topology::{self, Attachment, Ports, TopologyError};
use super::transport::{Transport, TransportError};
use super::wire::{Address, Command, DatagramRepr};
use serde::Serialize;
use std::time::Duration;
use tracing::Instrument;

/// Station address given to the terminal at position 0 when it has no alias; the others
/// follow in position order (the convention of ETG.1600 examples and most masters).
pub const FIRST_STATION_ADDRESS: u16 = 0x1001;

/// SyncManager control byte of the receive mailbox (master to terminal): mailbox mode,
/// ECAT writes, AL event interrupt (ETG.1000.4 table 58: 0x26).
pub const SM_CONTROL_MAILBOX_WRITE: u8 = 0x26;
/// SyncManager control byte of the send mailbox (terminal to master): mailbox mode,
/// ECAT reads, AL event interrupt (ETG.1000.4 table 58: 0x22).
pub const SM_CONTROL_MAILBOX_READ: u8 = 0x22;
/// SyncManager activate byte: enabled (ETG.1000.4 table 58).
pub const SM_ENABLE: u8 = 0x01;

/// What the ESC says about itself (registers 0x0000..0x0009, ETG.1000.4 table 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct EscInfo {
    /// ESC type.
    pub kind: u8,
    /// ESC revision.
    pub revision: u8,
    /// ESC build.
    pub build: u16,
    /// FMMUs supported.
    pub fmmus: u8,
    /// SyncManagers supported.
    pub sync_managers: u8,
    /// Process RAM in KiB.
    pub ram_kib: u8,
    /// Port descriptor.
    pub port_descriptor: u8,
    /// Feature bits (0x0008).
    pub features: u16,
}

impl EscInfo {
    fn parse(b: &[u8]) -> EscInfo {
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        EscInfo {
            kind: at(0),
            revision: at(1),
            build: u16::from_le_bytes([at(2), at(3)]),
            fmmus: at(4),
            sync_managers: at(5),
            ram_kib: at(6),
            port_descriptor: at(7),
            features: u16::from_le_bytes([at(8), at(9)]),
        }
    }

    /// Whether the ESC has distributed clocks.
    pub fn dc(&self) -> bool {
        self.features & features::DC_SUPPORTED != 0
    }
}

/// One terminal as the master found it.
#[derive(Debug, Clone, Serialize)]
pub struct Terminal {
    /// Position on the bus (auto-increment address), from 0.
    pub position: u16,
    /// Configured station address.
    pub station: u16,
    /// Station alias (register 0x0012, from SII word 4); 0 if none.
    pub alias: u16,
    /// Identity from the SII (zero if the SII could not be read).
    pub identity: Identity,
    /// Device name from the SII strings.
    pub name: Option<String>,
    /// ESC information.
    pub esc: EscInfo,
    /// DL status of the ports.
    pub ports: Ports,
    /// Where the terminal hangs off (None for the first terminal).
    pub attachment: Option<Attachment>,
    /// AL status when last read.
    #[serde(serialize_with = "serialize_status")]
    pub status: AlStatus,
    /// Propagation delay from the reference clock, once DC is set up.
    pub dc_delay_ns: Option<u32>,
    /// The SYNC signals configured during DC setup (`None`: none configured).
    #[serde(skip)]
    pub dc_sync: Option<dc::SyncSettings>,
    /// Why the SII could not be read or parsed, if it could not.
    pub sii_error: Option<String>,
    /// The parsed SII.
    #[serde(skip)]
    pub sii: Option<SiiImage>,
}

fn serialize_status<S: serde::Serializer>(s: &AlStatus, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&s.to_string())
}

/// Why bring-up failed.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// No terminal answered a broadcast read.
    #[error("no EtherCAT terminal answered on the bus (broadcast read working counter 0)")]
    NoTerminals,
    /// A bus access of a bring-up step failed.
    #[error("{step}: {source}")]
    Transport {
        /// The step, in words.
        step: String,
        /// The failure.
        #[source]
        source: TransportError,
    },
    /// The DL status of the terminals describes no tree.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A state change failed.
    #[error(transparent)]
    Al(#[from] AlError),
    /// A register access through the station interface failed.
    #[error(transparent)]
    Register(#[from] super::station_io::RegisterError),
    /// The terminal count changed between the broadcast and the scan.
    #[error("the bus changed during the scan: {0}")]
    Changed(String),
    /// The process data could not be configured.
    #[error(transparent)]
    Pdo(#[from] pdo::PdoError),
    /// The SyncManager/FMMU configuration could not be planned or written.
    #[error(transparent)]
    ProcessImage(#[from] pdo::ConfigError),
    /// BOOT was asked of a terminal whose SII offers no bootstrap mailbox.
    #[error(
        "terminal 0x{station:04x} ({name}) does not offer BOOT: its SII has no bootstrap mailbox (words 0x14..0x17)"
    )]
    BootNotOffered {
        /// The terminal.
        station: u16,
        /// Its name from the SII, or its identity.
        name: String,
    },
    /// The SYNC signals cannot be configured as asked.
    #[error(transparent)]
    Sync(#[from] dc::SyncError),
    /// The first SYNC pulses could not be placed ahead of the terminals' system time.
    #[error(transparent)]
    SyncStart(#[from] dc::StartMissed),
    /// A hook of the caller failed.
    #[error("{step} of terminal 0x{station:04x}: {message}")]
    Hook {
        /// The step.
        step: &'static str,
        /// The terminal.
        station: u16,
        /// What went wrong.
        message: String,
    },
}

fn step(step: impl Into<String>) -> impl FnOnce(TransportError) -> MasterError {
    let step = step.into();
    move |source| MasterError::Transport { step, source }
}

/// Options of the scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Read and parse each terminal's SII (identity, name, mailbox, PDOs).
    pub read_sii: bool,
}

impl Default for ScanOptions {
    fn default() -> ScanOptions {
        ScanOptions { read_sii: true }
    }
}

/// Distributed-clock options for bring-up.
#[derive(Debug, Clone)]
pub struct DcOptions {
    /// Frames of static drift compensation (ETG.1000.4 §9.1.4 suggests thousands).
    pub drift_frames: usize,
    /// The bus cycle the SYNC signals follow. `Some`: each terminal whose SII lists DC
    /// modes gets the SYNC0/SYNC1 settings of its chosen mode (see `modes`), or SYNC off
    /// if the chosen mode starts none. `None`: SYNC signals are left as they are.
    pub sync_cycle: Option<Duration>,
    /// Which DC mode each terminal follows; terminals no entry concerns use
    /// [`dc::DcModeChoice::Auto`] (the first mode that starts SYNC0).
    pub modes: Vec<DcModeSelection>,
}

impl Default for DcOptions {
    fn default() -> DcOptions {
        DcOptions {
            drift_frames: 2000,
            sync_cycle: None,
            modes: Vec::new(),
        }
    }
}

/// SyncManager watchdog written during bring-up unless the caller chooses another: the
/// ETG.2000 ESI default (100 ms, divider 2498: 100 µs units).
pub const DEFAULT_WATCHDOG: Duration = Duration::from_millis(100);

/// What [`Master::request_state`] does besides changing states, on the way from INIT or
/// PRE-OP to SAFE-OP (before the PRE-OP → SAFE-OP transition, where terminals check their
/// SyncManager, watchdog and SYNC configuration).
///
/// The default sets up distributed clocks on every such bring-up: propagation delays
/// and offsets of every terminal with a DC unit, then 2000 frames of static drift
/// compensation ([`DcOptions::default`]), but no SYNC signals; and it writes a
/// [`DEFAULT_WATCHDOG`] SyncManager watchdog. `dc: None` leaves the clocks alone (no DC
/// frames at all), `watchdog: None` the watchdogs:
///
/// ```
/// use ferrocat::ethercat::master::BringUpOptions;
/// // Process data only: no DC set-up, watchdogs as the terminals have them.
/// let _quick = BringUpOptions { dc: None, watchdog: None };
/// ```
///
/// Everything is checked before anything is written: a watchdog longer than the
/// registers hold ([`al::MAX_WATCHDOG`]) and SYNC settings that cannot be made
/// ([`dc::plan_sync`]) fail [`Master::request_state`] before its first write.
#[derive(Debug, Clone)]
pub struct BringUpOptions {
    /// Distributed clocks (delays, offsets, drift compensation, SYNC signals) for the
    /// terminals that support them; `None`: DC is left alone.
    pub dc: Option<DcOptions>,
    /// The process-data (SyncManager) watchdog of every terminal (`Duration::ZERO`
    /// disables it, at most [`al::MAX_WATCHDOG`]); `None`: left as the terminals have it.
    pub watchdog: Option<Duration>,
}

impl Default for BringUpOptions {
    fn default() -> BringUpOptions {
        BringUpOptions {
            dc: Some(DcOptions::default()),
            watchdog: Some(DEFAULT_WATCHDOG),
        }
    }
}

/// The process image's outputs in their safe values, written in SAFE-OP before OP is
/// requested (terminals refuse OP with AL status code 0x0019 without valid outputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeOutputs {
    /// Logical start address of the image.
    pub logical: u32,
    /// The image: outputs at their safe values, inputs zero.
    pub image: Vec<u8>,
}

/// Logical address at which the process image starts by default.
pub const DEFAULT_LOGICAL_START: u32 = 0x0001_0000;

/// The master of one bus.
#[derive(Debug)]
pub struct Master {
    transport: Transport,
    terminals: Vec<Terminal>,
    layouts: Vec<Option<PdoLayout>>,
    image: Option<ProcessImage>,
    bring_up: BringUpOptions,
}

/// Allocate station addresses: the alias where a terminal has a unique non-zero one,
/// otherwise FIRST_STATION_ADDRESS + position, skipping addresses taken by aliases.
pub fn assign_addresses(aliases: &[u16]) -> Vec<u16> {
    let unique = |a: u16| a != 0 && aliases.iter().filter(|&&x| x == a).count() == 1;
    let taken: Vec<u16> = aliases.iter().copied().filter(|&a| unique(a)).collect();
    let mut next = FIRST_STATION_ADDRESS;
    aliases
        .iter()
        .map(|&a| {
            if unique(a) {
                a
            } else {
                while taken.contains(&next) {
                    next = next.wrapping_add(1);
                }
                let s = next;
                next = next.wrapping_add(1);
                s
            }
        })
        .collect()
}

/// Send `datagrams` in as few frames as fit; every working counter must be 1. Returns
/// the data of each datagram, in order; the error names `step` and the first datagram
/// that failed.
async fn checked_batch(
    transport: &Transport,
    step_name: &str,
    datagrams: Vec<DatagramRepr>,
) -> Result<Vec<Vec<u8>>, MasterError> {
    let replies = transport.batch(datagrams).await.map_err(step(step_name))?;
    replies
        .into_iter()
        .map(|d| {
            super::transport::expect_wkc(&d, 1).map_err(step(step_name))?;
            Ok(d.data)
        })
        .collect()
}

impl Master {
    /// Count the terminals, assign station addresses, read ESC information, DL status,
    /// topology, SII and AL status. Changes no AL state.
    pub async fn scan(transport: Transport, options: &ScanOptions) -> Result<Master, MasterError> {
        let span = tracing::info_span!("scan");
        async move {
            let (_, count) = transport
                .brd(registers::TYPE, 1)
                .await
                .map_err(step("counting terminals (BRD 0x0000)"))?;
            tracing::info!(count, "terminals answered");
            if count == 0 {
                return Err(MasterError::NoTerminals);
            }
            // Aliases of all positions, as many APRDs per frame as fit.
            let aliases: Vec<u16> = checked_batch(
                &transport,
                "reading the aliases (APRD 0x0012)",
                (0..count)
                    .map(|position| {
                        DatagramRepr::new(
                            Command::Aprd,
                            Address::Position {
                                position,
                                register: registers::STATION_ALIAS,
                            },
                            vec![0; 2],
                        )
                    })
                    .collect(),
            )
            .await?
            .iter()
            .map(|d| u16::from_le_bytes([d[0], d[1]]))
            .collect();
            let stations = assign_addresses(&aliases);
            for (position, station) in stations.iter().enumerate() {
                tracing::debug!(
                    position,
                    station = format_args!("0x{station:04x}"),
                    alias = aliases[position],
                    "assigning station address"
                );
            }
            checked_batch(
                &transport,
                "assigning station addresses (APWR 0x0010)",
                stations
                    .iter()
                    .enumerate()
                    .map(|(position, station)| {
                        DatagramRepr::new(
                            Command::Apwr,
                            Address::Position {
                                position: position as u16,
                                register: registers::STATION_ADDRESS,
                            },
                            station.to_le_bytes().to_vec(),
                        )
                    })
                    .collect(),
            )
            .await?;
            // ESC information, DL status and AL status of every terminal.
            let reads: Vec<DatagramRepr> = stations
                .iter()
                .flat_map(|&station| {
                    [
                        (registers::TYPE, 10),
                        (registers::DL_STATUS, 2),
                        (registers::AL_STATUS, 2),
                    ]
                    .map(|(register, len)| {
                        DatagramRepr::new(
                            Command::Fprd,
                            Address::Station { station, register },
                            vec![0; len],
                        )
                    })
                })
                .collect();
            let data = checked_batch(
                &transport,
                "reading ESC information, DL status and AL status",
                reads,
            )
            .await?;
            let mut terminals = Vec::with_capacity(usize::from(count));
            for (position, chunk) in data.chunks(3).enumerate() {
                let [esc, dl, st] = chunk else {
                    return Err(MasterError::Changed("a reply lost datagrams".into()));
                };
                terminals.push(Terminal {
                    position: position as u16,
                    station: stations[position],
                    alias: aliases[position],
                    identity: Identity::default(),
                    name: None,
                    esc: EscInfo::parse(esc),
                    ports: Ports {
                        dl_status: u16::from_le_bytes([dl[0], dl[1]]),
                    },
                    attachment: None,
                    status: AlStatus {
                        raw: u16::from_le_bytes([st[0], st[1]]),
                    },
                    dc_delay_ns: None,
                    dc_sync: None,
                    sii_error: None,
                    sii: None,
                });
            }
            let ports: Vec<Ports> = terminals.iter().map(|t| t.ports).collect();
            for (t, a) in terminals.iter_mut().zip(topology::attach(&ports)?) {
                t.attachment = a;
            }
            // Check nobody joined or left meanwhile.
            let (_, again) = transport
                .brd(registers::TYPE, 1)
                .await
                .map_err(step("re-counting terminals"))?;
            if again != count {
                return Err(MasterError::Changed(format!(
                    "{count} terminals at first, {again} after assigning addresses"
                )));
            }
            let layouts = vec![None; terminals.len()];
            let mut master = Master {
                transport,
                terminals,
                layouts,
                image: None,
                bring_up: BringUpOptions::default(),
            };
            if options.read_sii {
                master.read_sii().await;
            }
            Ok(master)
        }
        .instrument(span)
        .await
    }

    /// Read every terminal's SII, all terminals together (their EEPROM accesses share
    /// frames, see [`super::sii::bulk`]); a terminal whose SII fails keeps the error in
    /// [`Terminal::sii_error`] and a zero identity.
    pub async fn read_sii(&mut self) {
        let stations: Vec<u16> = self.terminals.iter().map(|t| t.station).collect();
        let images = super::sii::bulk::read_images(
            &self.transport,
            &stations,
            super::sii::EepromOptions::default(),
        )
        .instrument(tracing::debug_span!("read_sii", terminals = stations.len()))
        .await;
        for (t, image) in self.terminals.iter_mut().zip(images) {
            let parsed = image.and_then(|bytes| {
                SiiImage::parse(&bytes).map_err(|source| super::sii::EepromError::Parse {
                    station: t.station,
                    source,
                })
            });
            match parsed {
                Ok(sii) => {
                    t.identity = sii.identity();
                    t.name = sii.name().map(|n| n.into_owned());
                    t.sii = Some(sii);
                }
                Err(e) => {
                    tracing::warn!(station = t.station, error = %e, "SII unreadable");
                    t.sii_error = Some(e.to_string());
                }
            }
        }
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The terminals, in position order.
    pub fn terminals(&self) -> &[Terminal] {
        &self.terminals
    }

    /// The terminal with station address `station`.
    pub fn terminal(&self, station: u16) -> Option<&Terminal> {
        self.terminals.iter().find(|t| t.station == station)
    }

    /// Re-read every terminal's AL status.
    pub async fn refresh_status(&mut self) -> Result<(), MasterError> {
        for t in &mut self.terminals {
            t.status = al::status(&self.transport, t.station).await?;
        }
        Ok(())
    }

    /// Configure the mailbox SyncManagers (SM0 receive, SM1 send) of every terminal whose
    /// SII describes a mailbox, as needed before PRE-OP (ETG.1000.6 §5.6.1).
    pub async fn configure_mailboxes(&self) -> Result<(), MasterError> {
        self.configure_mailboxes_for(AlState::PreOp).await
    }

    /// Configure the mailbox SyncManagers for `state`: the bootstrap mailbox (SII words
    /// 0x14..0x17) before BOOT, the standard mailbox (words 0x18..0x1B) otherwise.
    pub async fn configure_mailboxes_for(&self, state: AlState) -> Result<(), MasterError> {
        self.configure_mailboxes_of(state, &[]).await
    }

    /// [`Master::configure_mailboxes_for`] for the terminals `stations` (all if empty).
    pub async fn configure_mailboxes_of(
        &self,
        state: AlState,
        stations: &[u16],
    ) -> Result<(), MasterError> {
        for t in &self.terminals {
            if !stations.is_empty() && !stations.contains(&t.station) {
                continue;
            }
            let Some(sii) = &t.sii else { continue };
            let mut sms = pdo::mailbox_sync_managers(sii);
            if state == AlState::Boot {
                let (rx, tx) = (
                    sii.header.bootstrap_rx_mailbox,
                    sii.header.bootstrap_tx_mailbox,
                );
                if rx.size == 0 || tx.size == 0 {
                    continue;
                }
                for (sm, area) in sms.iter_mut().zip([rx, tx]) {
                    sm.start = area.offset;
                    sm.length = area.size;
                }
            }
            if sms.is_empty() {
                continue;
            }
            tracing::debug!(station = t.station, %state, "mailbox SyncManagers");
            pdo::check_ram(t.station, t.esc.ram_kib, &sms)?;
            pdo::write_sync_managers(&self.transport, t.station, &sms).await?;
        }
        Ok(())
    }

    /// The PDO layout of each terminal (after [`Master::configure_process_data`]).
    pub fn layouts(&self) -> &[Option<PdoLayout>] {
        &self.layouts
    }

    /// The process image (after [`Master::configure_process_data`]).
    pub fn process_image(&self) -> Option<&ProcessImage> {
        self.image.as_ref()
    }

    /// In PRE-OP: read each terminal's PDO layout (over CoE, or from the SII when the
    /// terminal has no CoE or lacks the objects), place all terminals in one logical
    /// process image starting at `logical_start`, and write the process-data
    /// SyncManagers and FMMUs. Terminals without SII are left out.
    pub async fn configure_process_data(
        &mut self,
        logical_start: u32,
    ) -> Result<&ProcessImage, MasterError> {
        let span = tracing::info_span!("process_data", logical_start);
        async move {
            for (i, t) in self.terminals.iter().enumerate() {
                let Some(sii) = &t.sii else { continue };
                let coe = match (sii.header.mailbox_protocols.coe(), MailboxConfig::from_sii(sii)) {
                    (true, Some(config)) => Some(CoeClient::new(Mailbox::new(
                        self.transport.clone(),
                        t.station,
                        config,
                    ))),
                    _ => None,
                };
                let layout = match pdo::read_layout(coe.as_ref(), sii).await {
                    Ok(l) => l,
                    // The SII claims CoE but the mailbox refuses the protocol: the SII's
                    // PDOs are all there is.
                    Err(pdo::PdoError::Coe {
                        source:
                            CoeError::Mailbox(MailboxError::ErrorReply { code, .. }),
                        ..
                    }) => {
                        tracing::warn!(station = t.station, %code, "CoE refused by the mailbox; PDOs from the SII");
                        PdoLayout::from_sii(sii, format!("the mailbox refused CoE: {code}"))
                    }
                    Err(e) => return Err(e.into()),
                };
                tracing::debug!(station = t.station, source = ?layout.source, "PDO layout");
                self.layouts[i] = Some(layout);
            }
            let inputs: Vec<TerminalInput<'_>> = self
                .terminals
                .iter()
                .zip(&self.layouts)
                .filter_map(|(t, l)| {
                    Some(TerminalInput {
                        station: t.station,
                        sii: t.sii.as_ref()?,
                        layout: l.as_ref()?,
                        bit_oriented_fmmus: t.esc.features & features::FMMU_BYTE_ORIENTED == 0,
                    })
                })
                .collect();
            let image = pdo::plan(&inputs, logical_start)?;
            for ti in &image.terminals {
                let ram_kib = self.terminal(ti.station).map_or(0, |t| t.esc.ram_kib);
                pdo::check_ram(ti.station, ram_kib, &ti.sync_managers)?;
                pdo::write_sync_managers(&self.transport, ti.station, &ti.sync_managers).await?;
                pdo::write_fmmus(&self.transport, ti.station, &ti.fmmus).await?;
            }
            tracing::info!(outputs = ?image.outputs, inputs = ?image.inputs, "process image configured");
            self.image = Some(image);
            self.image
                .as_ref()
                .ok_or_else(|| MasterError::Changed("process image lost".into()))
        }
        .instrument(span)
        .await
    }

    /// Safe outputs of the configured process image: all outputs zero.
    pub fn zero_outputs(&self) -> Option<SafeOutputs> {
        let image = self.image.as_ref()?;
        Some(SafeOutputs {
            logical: image.outputs.start,
            image: vec![0; image.outputs.len as usize],
        })
    }

    /// What [`Master::request_state`] sets up on the way to SAFE-OP.
    pub fn bring_up_options(&self) -> &BringUpOptions {
        &self.bring_up
    }

    /// Choose what [`Master::request_state`] sets up on the way to SAFE-OP (by default
    /// distributed clocks — delays, offsets, 2000 drift frames — without SYNC signals,
    /// and a [`DEFAULT_WATCHDOG`] watchdog; see [`BringUpOptions`]).
    pub fn set_bring_up_options(&mut self, options: BringUpOptions) {
        self.bring_up = options;
    }

    /// Check, before anything is written, that every terminal of `stations` (all if
    /// empty) offers BOOT: its SII describes a bootstrap mailbox (ETG.1000.6 table 16,
    /// words 0x14..0x17), which BOOT needs for firmware download. A terminal whose SII
    /// could not be read is not refused here; it answers the request itself.
    pub fn check_boot_offered(&self, stations: &[u16]) -> Result<(), MasterError> {
        for t in &self.terminals {
            if !stations.is_empty() && !stations.contains(&t.station) {
                continue;
            }
            let Some(sii) = &t.sii else { continue };
            let (rx, tx) = (
                sii.header.bootstrap_rx_mailbox,
                sii.header.bootstrap_tx_mailbox,
            );
            if rx.size == 0 || tx.size == 0 {
                return Err(MasterError::BootNotOffered {
                    station: t.station,
                    name: t.name.clone().unwrap_or_else(|| {
                        format!(
                            "vendor 0x{:08x} product 0x{:08x}",
                            t.identity.vendor_id, t.identity.product_code
                        )
                    }),
                });
            }
        }
        Ok(())
    }

    /// Bring every terminal to `target`, all terminals step by step together (INIT →
    /// PRE-OP → SAFE-OP → OP, down in one step, BOOT through INIT, refused before any
    /// write if a terminal does not offer it). Mailbox SyncManagers are configured
    /// before PRE-OP or BOOT. Before PRE-OP → SAFE-OP come the process
    /// data (SyncManagers, FMMUs), then the watchdogs and distributed clocks of the
    /// [`BringUpOptions`], whose watchdog and SYNC settings are checked and planned
    /// before the first write. `safe_outputs`, if given, is written with LWR in SAFE-OP,
    /// and kept being written while OP is requested.
    pub async fn request_state(
        &mut self,
        target: AlState,
        safe_outputs: Option<&SafeOutputs>,
    ) -> Result<(), MasterError> {
        let span = tracing::info_span!("request_state", %target);
        async move {
            if target == AlState::Boot {
                self.check_boot_offered(&[])?;
            }
            self.refresh_status().await?;
            // The lowest state of any terminal decides the path.
            let from = self
                .terminals
                .iter()
                .filter_map(|t| t.status.state())
                .min_by_key(|s| s.rank())
                .unwrap_or(AlState::Init);
            let mut path = al::path(from, target);
            if path.is_empty() {
                path.push(target);
            }
            // The bring-up to SAFE-OP is checked and planned before anything is written.
            let bring_up = path.contains(&AlState::SafeOp) && from.rank() < 2;
            let mut dc_plan = None;
            if bring_up {
                if let Some(time) = self.bring_up.watchdog {
                    al::watchdog_registers(time).map_err(AlError::from)?;
                }
                if let Some(dc) = self.bring_up.dc.clone() {
                    dc_plan = Some((dc.drift_frames, self.plan_dc(&dc).await?));
                }
            }
            for t in &self.terminals {
                if t.status.error() {
                    al::acknowledge(&self.transport, t.station, t.status).await?;
                }
            }
            for s in path {
                if matches!(s, AlState::PreOp | AlState::Boot) {
                    self.configure_mailboxes_for(s).await?;
                }
                if s == AlState::SafeOp && bring_up {
                    self.configure_process_data(DEFAULT_LOGICAL_START).await?;
                    if let Some(time) = self.bring_up.watchdog {
                        self.configure_watchdogs(time).await?;
                    }
                    if let Some((drift_frames, plan)) = dc_plan.take() {
                        self.run_dc(drift_frames, plan).await?;
                    }
                }
                let zeros = self.zero_outputs();
                let safe_outputs = safe_outputs.or(zeros.as_ref());
                tracing::info!(state = %s, "requesting state of all terminals");
                let keeper = match (s, safe_outputs) {
                    (AlState::Op, Some(out)) if !out.image.is_empty() => {
                        Some(self.spawn_output_writer(out.clone()).await?)
                    }
                    _ => None,
                };
                let result = self.step_all(s).await;
                if let Some(k) = keeper {
                    k.abort();
                }
                result?;
            }
            self.refresh_status().await
        }
        .instrument(span)
        .await
    }

    /// Move every terminal to `state`: one broadcast write of AL control, then broadcast
    /// reads of AL status until every terminal reports the state (the OR of all states
    /// equals it only if all do, since no state is 0). On an error indication, a missing
    /// terminal or a timeout, every terminal is asked and waited for on its own, which
    /// names the terminal, acknowledges its error and reports its AL status code.
    async fn step_all(&self, state: AlState) -> Result<(), MasterError> {
        if self
            .terminals
            .iter()
            .all(|t| t.status.state() == Some(state) && !t.status.error())
        {
            return Ok(());
        }
        let n = self.terminals.len() as u16;
        let timeout = state.default_timeout();
        let start = tokio::time::Instant::now();
        let wkc = self
            .transport
            .bwr(registers::AL_CONTROL, &(state as u16).to_le_bytes())
            .await
            .map_err(step(format!("requesting {state} (BWR 0x0120)")))?;
        if wkc == n {
            loop {
                let (data, wkc) = self
                    .transport
                    .brd(registers::AL_STATUS, 2)
                    .await
                    .map_err(step(format!("waiting for {state} (BRD 0x0130)")))?;
                let all = u16::from_le_bytes([data[0], data[1]]);
                let wanted = state as u16;
                if wkc == n && all & (registers::al::STATE_MASK | registers::al::ERROR) == wanted {
                    tracing::debug!(elapsed = ?start.elapsed(), "all terminals reached the state");
                    return Ok(());
                }
                if wkc != n || all & registers::al::ERROR != 0 || start.elapsed() >= timeout {
                    tracing::debug!(wkc, all, "broadcast wait ends; asking each terminal");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let remaining = timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_millis(100));
        let mut set = tokio::task::JoinSet::new();
        for t in &self.terminals {
            let transport = self.transport.clone();
            let station = t.station;
            set.spawn(async move {
                let st = al::status(&transport, station).await?;
                if st.state() == Some(state) && !st.error() {
                    return Ok(());
                }
                al::request(&transport, station, state, remaining).await
            });
        }
        let mut first_error = None;
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "state change failed");
                    first_error.get_or_insert(MasterError::Al(e));
                }
                Err(join) => {
                    first_error.get_or_insert(MasterError::Changed(join.to_string()));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Write the safe outputs once, then keep writing them every millisecond until the
    /// returned task is aborted.
    async fn spawn_output_writer(
        &self,
        out: SafeOutputs,
    ) -> Result<tokio::task::JoinHandle<()>, MasterError> {
        let write = |t: Transport, out: SafeOutputs| async move {
            t.exchange(vec![DatagramRepr::new(
                Command::Lwr,
                Address::Logical(out.logical),
                out.image,
            )])
            .await
        };
        write(self.transport.clone(), out.clone())
            .await
            .map_err(step("writing safe outputs (LWR)"))?;
        let t = self.transport.clone();
        Ok(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                if write(t.clone(), out.clone()).await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Distributed clocks at start-up, each step in its own span: plan the SYNC settings
    /// before anything is written (`dc_plan`, see [`dc::plan_sync`]); latch receive
    /// times, compute propagation delays along the topology, write delays (0x0928) and
    /// offsets (0x0920) (`dc_delays`); compensate static drift against the reference
    /// clock, the first terminal with a system time (`dc_drift`); and, when
    /// `options.sync_cycle` is set, configure the SYNC signals of every terminal with a
    /// system time whose SII lists DC modes (`dc_sync`).
    pub async fn configure_dc(&mut self, options: &DcOptions) -> Result<(), MasterError> {
        let plan = self.plan_dc(options).await?;
        self.run_dc(options.drift_frames, plan).await
    }

    /// What [`Master::configure_dc`] will do with `options`, decided and checked before
    /// anything is written; it only reads (0x0918 of the terminals with DC modes, whose
    /// working counter tells which have a system time).
    async fn plan_dc(&self, options: &DcOptions) -> Result<DcPlan, MasterError> {
        let terminals: Vec<usize> = (0..self.terminals.len())
            .filter(|&i| self.terminals[i].esc.dc())
            .collect();
        let Some(cycle) = options.sync_cycle else {
            return Ok(DcPlan {
                terminals,
                sync: None,
            });
        };
        let span = tracing::info_span!("dc_plan", ?cycle);
        async move {
            let cycle_ns = u64::try_from(cycle.as_nanos()).unwrap_or(u64::MAX);
            let with_modes: Vec<usize> = terminals
                .iter()
                .copied()
                .filter(|&i| {
                    self.terminals[i]
                        .sii
                        .as_ref()
                        .is_some_and(|s| !s.dc_modes.is_empty())
                })
                .collect();
            let replies = self
                .transport
                .batch(
                    with_modes
                        .iter()
                        .map(|&i| {
                            DatagramRepr::new(
                                Command::Fprd,
                                Address::Station {
                                    station: self.terminals[i].station,
                                    register: registers::DC_RECEIVE_TIME_PROCESSING_UNIT,
                                },
                                vec![0; 8],
                            )
                        })
                        .collect(),
                )
                .await
                .map_err(step(
                    "finding the terminals with a DC system time (FPRD 0x0918)",
                ))?;
            let candidates: Vec<SyncCandidate<'_>> = with_modes
                .iter()
                .zip(&replies)
                .filter(|(_, reply)| reply.wkc == 1)
                .filter_map(|(&index, _)| {
                    let t = &self.terminals[index];
                    Some(SyncCandidate {
                        index,
                        position: t.position,
                        station: t.station,
                        sii: t.sii.as_ref()?,
                    })
                })
                .collect();
            let sync = dc::plan_sync(&candidates, &options.modes, cycle_ns)?;
            Ok(DcPlan {
                terminals,
                sync: Some((cycle_ns, sync)),
            })
        }
        .instrument(span)
        .await
    }

    /// Carry out a [`DcPlan`] (see [`Master::configure_dc`]).
    async fn run_dc(&mut self, drift_frames: usize, plan: DcPlan) -> Result<(), MasterError> {
        let span = tracing::info_span!("dc");
        async move {
            let dc_terminals = plan.terminals;
            if dc_terminals.is_empty() {
                tracing::info!("no terminal supports distributed clocks");
                return Ok(());
            }
            let latches = self
                .measure_dc_delays(&dc_terminals)
                .instrument(tracing::info_span!(
                    "dc_delays",
                    terminals = dc_terminals.len()
                ))
                .await?;
            let Some(reference) = dc_terminals
                .iter()
                .copied()
                .find(|&i| latches[i].is_some_and(|l| l.processing_unit.is_some()))
            else {
                tracing::info!("no terminal has a DC system time");
                return Ok(());
            };
            let reference_station = self.terminals[reference].station;
            dc::compensate_drift(&self.transport, reference_station, drift_frames, 64)
                .instrument(tracing::info_span!(
                    "dc_drift",
                    reference = format_args!("0x{reference_station:04x}"),
                    frames = drift_frames
                ))
                .await
                .map_err(step("static drift compensation (FRMW 0x0910)"))?;
            if let Some((cycle_ns, sync)) = plan.sync {
                self.configure_sync(&sync, reference_station, cycle_ns)
                    .instrument(tracing::info_span!("dc_sync", cycle_ns))
                    .await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Latch the receive times, compute and write every DC terminal's delay and offset;
    /// returns the latches (by position).
    async fn measure_dc_delays(
        &mut self,
        dc_terminals: &[usize],
    ) -> Result<Vec<Option<Latch>>, MasterError> {
        dc::latch(&self.transport)
            .await
            .map_err(step("latching receive times (BWR 0x0900)"))?;
        let master_now = dc::ethercat_now();
        let mut latches: Vec<Option<Latch>> = vec![None; self.terminals.len()];
        for &i in dc_terminals {
            let station = self.terminals[i].station;
            latches[i] = Some(
                dc::read_latch(&self.transport, station)
                    .await
                    .map_err(step(format!("reading receive times of 0x{station:04x}")))?,
            );
        }
        let ports: Vec<Ports> = self.terminals.iter().map(|t| t.ports).collect();
        let tree: Vec<Option<Attachment>> = self.terminals.iter().map(|t| t.attachment).collect();
        let delays = dc::propagation_delays(&latches, &ports, &tree);
        let offsets = dc::offsets(&latches, &delays, master_now);
        for &i in dc_terminals {
            let station = self.terminals[i].station;
            let (Some(delay), Some(offset)) = (delays[i], offsets[i]) else {
                continue;
            };
            tracing::debug!(
                station = format_args!("0x{station:04x}"),
                delay_ns = delay,
                offset,
                "DC delay and offset"
            );
            self.transport
                .fpwr(
                    station,
                    registers::DC_SYSTEM_TIME_OFFSET,
                    &offset.to_le_bytes(),
                )
                .await
                .map_err(step(format!("writing the DC offset of 0x{station:04x}")))?;
            self.transport
                .fpwr(
                    station,
                    registers::DC_SYSTEM_TIME_DELAY,
                    &delay.to_le_bytes(),
                )
                .await
                .map_err(step(format!("writing the DC delay of 0x{station:04x}")))?;
            self.terminals[i].dc_delay_ns = Some(delay);
        }
        Ok(latches)
    }

    /// The SYNC signals of the terminals of `plan`, the first pulses on a common grid of
    /// `cycle_ns` [`dc::SYNC_START_LEAD_NS`] after the reference clock's current time. The
    /// writes of all terminals go out together (each terminal's in one frame), then its
    /// system time and start time are read back; a start that is not still ahead of the
    /// system time is placed again further ahead ([`dc::next_sync_lead`]), up to
    /// [`dc::SYNC_START_ATTEMPTS`] times and [`dc::SYNC_START_LEAD_MAX_NS`]; failing
    /// that, the SYNC signals are switched off again and [`dc::StartMissed`] names the
    /// terminal.
    async fn configure_sync(
        &mut self,
        plan: &[PlannedSync],
        reference_station: u16,
        cycle_ns: u64,
    ) -> Result<(), MasterError> {
        if plan.is_empty() {
            return Ok(());
        }
        let active: Vec<(u16, dc::SyncSettings)> = plan
            .iter()
            .filter_map(|p| Some((p.station, p.settings?)))
            .collect();
        let mut lead = dc::SYNC_START_LEAD_NS;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let now = self.read_system_time(reference_station).await?;
            let grid = dc::sync_grid_start(now, cycle_ns, lead);
            for p in plan {
                match &p.settings {
                    Some(s) => tracing::debug!(
                        station = format_args!("0x{:04x}", p.station),
                        mode = s.mode,
                        assign_activate = format_args!("0x{:04x}", s.assign_activate),
                        sync0_ns = s.sync0_cycle_ns,
                        sync1_ns = s.sync1_cycle_ns,
                        start = dc::sync_start(grid, s),
                        "SYNC signals"
                    ),
                    None => {
                        tracing::debug!(station = format_args!("0x{:04x}", p.station), "SYNC off")
                    }
                }
            }
            let writes = plan
                .iter()
                .map(|p| {
                    dc::sync_writes(
                        p.station,
                        p.settings.as_ref().map(|s| (s, dc::sync_start(grid, s))),
                    )
                })
                .collect();
            self.checked_groups("configuring the SYNC signals", writes)
                .await?;
            let reads = active
                .iter()
                .map(|&(station, _)| dc::start_check_reads(station))
                .collect();
            let read_back = self
                .checked_groups("reading back the SYNC start times", reads)
                .await?;
            let mut latest = now;
            let mut missed = None;
            for ((station, settings), group) in active.iter().zip(&read_back) {
                let [system_time, next_pulse] = group.as_slice() else {
                    return Err(MasterError::Changed("a reply lost datagrams".into()));
                };
                let (system_time, next_pulse) = (dc::le_u64(system_time), dc::le_u64(next_pulse));
                latest = latest.max(system_time);
                let start = dc::sync_start(grid, settings);
                if missed.is_none() && !dc::start_ahead(start, system_time, next_pulse) {
                    missed = Some(dc::StartMissed {
                        station: *station,
                        start,
                        system_time,
                        next_pulse,
                        attempts,
                        lead_ns: lead,
                    });
                }
            }
            let Some(missed) = missed else {
                for p in plan {
                    self.terminals[p.index].dc_sync = p.settings;
                }
                return Ok(());
            };
            let next = dc::next_sync_lead(lead, latest.saturating_sub(now));
            tracing::warn!(error = %missed, next_lead_ns = next, "SYNC start missed");
            if attempts >= dc::SYNC_START_ATTEMPTS || next > dc::SYNC_START_LEAD_MAX_NS {
                let off = plan
                    .iter()
                    .map(|p| dc::sync_writes(p.station, None))
                    .collect();
                if let Err(e) = self.checked_groups("switching SYNC off", off).await {
                    tracing::warn!(error = %e, "SYNC signals may stay on");
                }
                return Err(missed.into());
            }
            lead = next;
        }
    }

    /// [`Transport::batch_groups`] whose every working counter must be 1; the error names
    /// `step_name` and the first datagram that failed.
    async fn checked_groups(
        &self,
        step_name: &str,
        groups: Vec<Vec<DatagramRepr>>,
    ) -> Result<Vec<Vec<Vec<u8>>>, MasterError> {
        let replies = self
            .transport
            .batch_groups(groups)
            .await
            .map_err(step(step_name))?;
        replies
            .into_iter()
            .map(|group| {
                group
                    .into_iter()
                    .map(|d| {
                        super::transport::expect_wkc(&d, 1).map_err(step(step_name))?;
                        Ok(d.data)
                    })
                    .collect()
            })
            .collect()
    }

    /// Set the process-data (SyncManager) watchdog of every terminal to `time`
    /// (`Duration::ZERO` disables it): a terminal in OP whose outputs are not refreshed
    /// within `time` falls back to SAFE-OP with AL status code 0x001B.
    pub async fn configure_watchdogs(&self, time: Duration) -> Result<(), MasterError> {
        let span = tracing::info_span!("watchdogs", ?time);
        async move {
            al::watchdog_registers(time).map_err(AlError::from)?;
            for t in &self.terminals {
                al::configure_watchdog(&self.transport, t.station, time).await?;
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Read the 64-bit system time of terminal `station`.
    pub async fn read_system_time(&self, station: u16) -> Result<u64, MasterError> {
        let b = self
            .transport
            .fprd(station, registers::DC_SYSTEM_TIME, 8)
            .await
            .map_err(step(format!("reading the system time of 0x{station:04x}")))?;
        Ok(dc::le_u64(&b))
    }
}

/// What [`Master::configure_dc`] does, decided before anything is written.
#[derive(Debug, Clone)]
struct DcPlan {
    /// The terminals with a DC unit (port receive times at least), by index.
    terminals: Vec<usize>,
    /// The bus cycle in ns and the SYNC settings of every terminal with a system time
    /// whose SII lists DC modes; `None`: SYNC signals are left as they are.
    sync: Option<(u64, Vec<PlannedSync>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_honoured_and_never_collide() {
        assert_eq!(assign_addresses(&[0, 0, 0]), vec![0x1001, 0x1002, 0x1003]);
        // Terminal 2 has alias 0x1002: the others skip it.
        assert_eq!(
            assign_addresses(&[0, 0, 0x1002]),
            vec![0x1001, 0x1003, 0x1002]
        );
        // A duplicated alias is not used.
        assert_eq!(assign_addresses(&[7, 7, 9]), vec![0x1001, 0x1002, 9]);
    }
}
