//! `ferrocat xdp`: inspect and detach generic XDP programs (`ferrocat::xdp`), e.g. one
//! left running by a process that attached it permanently and exited.

use super::{CliError, Context, Exit};
use crate::bpf::bpffs::BpffsError;
use crate::bpf::xdp::{self as kxdp, XdpError};
use crate::xdp::{self, Error};

/// Show or detach the XDP program of an interface, or remove a directory of its pins.
///
/// Examples:
///   ferrocat xdp show eth1                  the XDP program attached to eth1, if any
///   ferrocat xdp detach eth1                detach the XDP link on eth1 and remove its pins
///   ferrocat xdp unpin /sys/fs/bpf/my_maps  remove the pins kept there (maps, link)
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub action: Action,
}

/// An `xdp` action.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Show the XDP program attached to IFACE (its id, and its link's id if attached
    /// through a link).
    Show {
        /// The interface.
        iface: String,
    },
    /// Detach the XDP link on IFACE, even if it is pinned, and remove the link's pins
    /// on every mounted bpffs (a pinned link keeps its program loaded). Pins of maps
    /// stay; `ferrocat xdp unpin DIR` removes them where DIR is a pin directory. If a
    /// pin of the link cannot be removed, the error says the program was detached and
    /// which pins are left, and why.
    Detach {
        /// The interface.
        iface: String,
    },
    /// Remove every pin in DIR (maps and link, as `pin_maps` made them) and DIR itself.
    /// DIR must be a directory on a bpffs holding no directory, not a bpffs mount.
    Unpin {
        /// The pin directory.
        dir: std::path::PathBuf,
    },
}

fn exit_of(e: &XdpError) -> Exit {
    match e {
        XdpError::InterfaceMissing { .. } => Exit::NoInput,
        XdpError::Permission { .. } => Exit::NoPerm,
        _ => Exit::OsErr,
    }
}

fn cli_error(e: XdpError) -> CliError {
    CliError::new(exit_of(&e), e.to_string())
}

fn xdp_exit(e: &Error) -> Exit {
    match e {
        Error::Xdp(x) => exit_of(x),
        Error::Bpffs(BpffsError::NotFound { .. }) => Exit::NoInput,
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Exit::NoInput,
        Error::Bpffs(BpffsError::Permission { .. }) => Exit::NoPerm,
        Error::Bpffs(BpffsError::NotBpffs { .. }) | Error::NotPinDir { .. } => Exit::Usage,
        // Detached, but the pins are left: the exit of what stopped their removal.
        Error::PinsLeft { source, .. } => xdp_exit(source),
        _ => Exit::OsErr,
    }
}

fn xdp_error(e: Error) -> CliError {
    CliError::new(xdp_exit(&e), e.to_string())
}

/// Runs `ferrocat xdp`.
pub async fn run(args: Args, ctx: &mut Context) -> Result<(), CliError> {
    match args.action {
        Action::Show { iface } => {
            let prog = kxdp::attached_program(&iface).map_err(cli_error)?;
            let link = match prog {
                Some(_) => kxdp::find_link(&iface).map_err(cli_error)?,
                None => None,
            };
            let link_id = match &link {
                Some(l) => Some(l.info().map_err(cli_error)?.id),
                None => None,
            };
            if ctx.json() {
                let v = serde_json::json!({
                    "iface": iface,
                    "prog_id": prog,
                    "link_id": link_id,
                });
                writeln!(ctx.out(), "{v}")?;
            } else {
                match (prog, link_id) {
                    (None, _) => writeln!(ctx.out(), "{iface}: no XDP program")?,
                    (Some(p), Some(l)) => {
                        writeln!(ctx.out(), "{iface}: XDP program id {p}, link id {l}")?
                    }
                    (Some(p), None) => writeln!(
                        ctx.out(),
                        "{iface}: XDP program id {p} (attached without a BPF link)"
                    )?,
                }
            }
            Ok(())
        }
        Action::Detach { iface } => {
            let Some(d) = xdp::detach(&iface).map_err(xdp_error)? else {
                return Err(CliError::new(
                    Exit::Unavailable,
                    format!("{iface} has no XDP program attached through a BPF link"),
                ));
            };
            if ctx.json() {
                let v = serde_json::json!({
                    "iface": iface,
                    "prog_id": d.prog_id,
                    "link_id": d.link_id,
                    "unpinned": d.unpinned,
                    "kept": d.kept,
                    "kept_elsewhere": d.kept_elsewhere.iter().map(|(dir, why)| {
                        serde_json::json!({ "dir": dir, "why": why })
                    }).collect::<Vec<_>>(),
                });
                writeln!(ctx.out(), "{v}")?;
                return Ok(());
            }
            writeln!(
                ctx.out(),
                "{iface}: XDP program id {} detached (link id {})",
                d.prog_id,
                d.link_id
            )?;
            for p in &d.unpinned {
                writeln!(ctx.out(), "removed the link's pin {}", p.display())?;
            }
            for dir in &d.kept {
                writeln!(
                    ctx.out(),
                    "kept the other pins in {0} (`ferrocat xdp unpin {0}` removes them)",
                    dir.display()
                )?;
            }
            for (dir, why) in &d.kept_elsewhere {
                writeln!(
                    ctx.out(),
                    "kept the other pins in {} (not a pin directory for `ferrocat xdp unpin`: {why}; remove them one by one)",
                    dir.display()
                )?;
            }
            Ok(())
        }
        Action::Unpin { dir } => {
            let removed = xdp::unpin_dir(&dir).map_err(xdp_error)?;
            if ctx.json() {
                let v = serde_json::json!({ "dir": dir, "unpinned": removed });
                writeln!(ctx.out(), "{v}")?;
            } else {
                for p in &removed {
                    writeln!(ctx.out(), "removed {}", p.display())?;
                }
                writeln!(ctx.out(), "removed {}", dir.display())?;
            }
            Ok(())
        }
    }
}
