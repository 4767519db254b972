//! `ferrocat xdp`: inspect and detach generic XDP programs (`ferrocat::xdp`), e.g. one
//! left running by a process that attached it permanently and exited.

use super::{CliError, Context, Exit};
use crate::bpf::xdp::{self as kxdp, XdpError};

/// Show or detach the XDP program of an interface.
///
/// Examples:
///   ferrocat xdp show eth1      the XDP program attached to eth1, if any
///   ferrocat xdp detach eth1    detach the XDP link on eth1 (e.g. a pinned one)
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
    /// Detach the XDP link on IFACE, even if it is pinned. Pins of its maps stay.
    Detach {
        /// The interface.
        iface: String,
    },
}

fn cli_error(e: XdpError) -> CliError {
    let exit = match &e {
        XdpError::InterfaceMissing { .. } => Exit::NoInput,
        XdpError::Permission { .. } => Exit::NoPerm,
        _ => Exit::OsErr,
    };
    CliError::new(exit, e.to_string())
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
            if kxdp::detach_interface(&iface).map_err(cli_error)? {
                writeln!(ctx.out(), "{iface}: XDP program detached")?;
                Ok(())
            } else {
                Err(CliError::new(
                    Exit::Unavailable,
                    format!("{iface} has no XDP program attached through a BPF link"),
                ))
            }
        }
    }
}
