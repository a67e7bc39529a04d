//! Wire bytes: a loopback TCP relay in front of the box's sshd that counts
//! what passes each way. Every tool connects to the relay instead of sshd.
//!
//! Why a relay rather than the tools' own figures or /proc counters: each
//! tool reports (or hides) its traffic differently, and cshost, rsync and
//! restic each start ssh their own way (a ControlMaster, `-e`, a subsystem).
//! Counting the TCP payload between the client's ssh and sshd measures all of
//! them the same way, with ssh's framing and encryption included, and needs
//! nothing from the tool but a port. The relay's copying costs some CPU on
//! the same 2 cores; it costs every tool the same per byte.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

/// Bytes the client sent (`up`) and received (`down`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wire {
    pub(crate) up: u64,
    pub(crate) down: u64,
}

impl Wire {
    /// The traffic between two readings of the counters.
    pub(crate) fn since(self, before: Wire) -> Wire {
        Wire {
            up: self.up - before.up,
            down: self.down - before.down,
        }
    }
}

pub(crate) struct Relay {
    pub(crate) port: u16,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl Relay {
    /// Listen on a free loopback port and forward every connection to
    /// `127.0.0.1:target`. The threads live as long as the bench.
    pub(crate) fn start(target: u16) -> Result<Self> {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("binding the wire-counting relay")?;
        let port = listener.local_addr()?.port();
        let (up, down) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (u, d) = (up.clone(), down.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                // Small request/response exchanges (sftp) must not wait on
                // Nagle in the relay: the tools did not ask for that delay.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    pump(client, server, u.clone());
                    pump(s2, c2, d.clone());
                }
            }
        });
        Ok(Self { port, up, down })
    }

    pub(crate) fn totals(&self) -> Wire {
        Wire {
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, count: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    count.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_forwards_and_counts_both_ways() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            // answer with twice what came in
            s.write_all(&got).unwrap();
            s.write_all(&got).unwrap();
        });
        let relay = Relay::start(target).unwrap();
        let before = relay.totals();
        let mut c = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
        c.write_all(&[7u8; 300_000]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 600_000);
        assert!(back.iter().all(|b| *b == 7));
        // The pump adds after it wrote, so the count is final once the
        // client saw the end of the stream on both sides.
        let w = relay.totals().since(before);
        assert_eq!(w.up, 300_000);
        assert_eq!(w.down, 600_000);
    }
}
