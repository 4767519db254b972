//! Port topology of a bus: which terminal hangs off which port of which other terminal,
//! derived from each terminal's DL status (ETG.1000.4 §6.1.5) and the order in which a
//! frame visits terminals.
//!
//! A frame enters a terminal on port 0 and leaves through its other open ports in the
//! order 3, 1, 2 before returning upstream through port 0 (ETG.1000.4 §6.1.5, "frame
//! processing order"). Auto-increment positions number terminals in that visiting order,
//! so the tree can be rebuilt from positions and open ports alone.

use super::registers::dl_status;
use serde::Serialize;

/// Order in which a terminal forwards a frame to its ports after port 0.
pub const FORWARDING_ORDER: [u8; 3] = [3, 1, 2];

/// State of the four ports of one terminal, from its DL status register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Ports {
    /// DL status register value.
    pub dl_status: u16,
}

impl Ports {
    /// Whether port `p` has a physical link.
    pub fn link(self, p: u8) -> bool {
        self.dl_status & dl_status::link(p) != 0
    }

    /// Whether communication is established on port `p` (a neighbour answers).
    pub fn communication(self, p: u8) -> bool {
        self.dl_status & dl_status::communication(p) != 0
    }

    /// Whether port `p` is closed (frames loop back without leaving).
    pub fn loop_closed(self, p: u8) -> bool {
        self.dl_status & dl_status::loop_closed(p) != 0
    }

    /// Ports other than 0 that lead to further terminals, in forwarding order.
    pub fn downstream(self) -> Vec<u8> {
        FORWARDING_ORDER
            .into_iter()
            .filter(|&p| self.communication(p) && !self.loop_closed(p))
            .collect()
    }
}

/// Where a terminal is attached: the parent's position and the parent's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Position of the parent terminal.
    pub parent: u16,
    /// Port of the parent the terminal hangs off.
    pub port: u8,
}

/// Why the DL status of the terminals cannot describe a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    /// A terminal (not the first) has no free port of an earlier terminal to hang off.
    #[error("terminal at position {position} has no open port of an earlier terminal to hang off")]
    Orphan {
        /// Position of the terminal.
        position: u16,
    },
}

/// Rebuild the tree from the ports of each terminal, in position order. The first
/// terminal is attached to the master (`None`).
pub fn attach(ports: &[Ports]) -> Result<Vec<Option<Attachment>>, TopologyError> {
    let mut out = Vec::with_capacity(ports.len());
    // (position, ports still to visit) of terminals whose subtrees are being walked.
    let mut open: Vec<(u16, Vec<u8>)> = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let position = i as u16;
        if i == 0 {
            out.push(None);
        } else {
            while open.last().is_some_and(|(_, rest)| rest.is_empty()) {
                open.pop();
            }
            let Some((parent, rest)) = open.last_mut() else {
                return Err(TopologyError::Orphan { position });
            };
            let port = rest.remove(0);
            out.push(Some(Attachment {
                parent: *parent,
                port,
            }));
        }
        let down = p.downstream();
        if !down.is_empty() {
            open.push((position, down));
        }
    }
    Ok(out)
}

/// The DL status of a terminal whose ports `open` have a link and communication and
/// whose other ports are closed, for unit tests.
#[cfg(test)]
pub(crate) fn ports(open: &[u8]) -> Ports {
    let mut s = 0u16;
    for p in 0..4u8 {
        if open.contains(&p) {
            s |= dl_status::link(p) | dl_status::communication(p);
        } else {
            s |= dl_status::loop_closed(p);
        }
    }
    Ports { dl_status: s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_hangs_off_port_1() {
        let bus = [ports(&[0, 1]), ports(&[0, 1]), ports(&[0])];
        let t = attach(&bus).unwrap();
        assert_eq!(t[0], None);
        assert_eq!(t[1], Some(Attachment { parent: 0, port: 1 }));
        assert_eq!(t[2], Some(Attachment { parent: 1, port: 1 }));
    }

    #[test]
    fn a_junction_forwards_3_then_1_then_2() {
        // 0: junction with ports 0,1,2,3 open. Behind port 3: terminal 1 (leaf).
        // Behind port 1: terminals 2 -> 3 (line). Behind port 2: terminal 4.
        let bus = [
            ports(&[0, 1, 2, 3]),
            ports(&[0]),
            ports(&[0, 1]),
            ports(&[0]),
            ports(&[0]),
        ];
        let t = attach(&bus).unwrap();
        assert_eq!(t[1], Some(Attachment { parent: 0, port: 3 }));
        assert_eq!(t[2], Some(Attachment { parent: 0, port: 1 }));
        assert_eq!(t[3], Some(Attachment { parent: 2, port: 1 }));
        assert_eq!(t[4], Some(Attachment { parent: 0, port: 2 }));
    }

    #[test]
    fn more_terminals_than_ports_is_an_error() {
        let bus = [ports(&[0, 1]), ports(&[0]), ports(&[0])];
        assert_eq!(attach(&bus), Err(TopologyError::Orphan { position: 2 }));
    }
}
