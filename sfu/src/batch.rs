//! Sending many datagrams in one system call (`sendmmsg`, Linux).
//!
//! Forwarding sends one datagram per subscriber per packet; a `sendto`
//! each cost about a sixth of the SFU's CPU at 17,000 packets/s
//! (`scripts/loadtest-visits.sh`, perf). The endpoint queues what its
//! connections wrote during a turn of its loop and sends the queue here.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

use bytes::BytesMut;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub(crate) const BATCH: usize = 64;

/// The kernel's message headers for one batch, allocated once.
pub(crate) struct Sender {
    headers: MultiHeaders<SockaddrStorage>,
}

impl Sender {
    pub(crate) fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }

    /// Sends as many of the first [`BATCH`] of `datagrams` as the kernel
    /// takes at once, without waiting; how many it took. `WouldBlock`
    /// when the socket's buffer is full; another error concerns the first
    /// datagram (the kernel stops at the first it refuses).
    pub(crate) fn send(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(SocketAddr, BytesMut)],
    ) -> io::Result<usize> {
        let batch = &datagrams[..datagrams.len().min(BATCH)];
        if batch.is_empty() {
            return Ok(0);
        }
        let slices: Vec<[IoSlice<'_>; 1]> = batch
            .iter()
            .map(|(_, datagram)| [IoSlice::new(datagram)])
            .collect();
        let addresses: Vec<Option<SockaddrStorage>> = batch
            .iter()
            .map(|(to, _)| Some(SockaddrStorage::from(*to)))
            .collect();
        let headers = &mut self.headers;
        socket.try_io(Interest::WRITABLE, || {
            let sent = sendmmsg(
                socket.as_raw_fd(),
                headers,
                &slices,
                &addresses,
                [],
                MsgFlags::empty(),
            )
            .map_err(io::Error::from)?
            .count();
            Ok(sent)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_reaches_each_of_its_destinations_in_order() {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let second = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let datagrams: Vec<(SocketAddr, BytesMut)> = (0..70u8)
            .map(|i| {
                let to = if i % 2 == 0 { &first } else { &second };
                (to.local_addr().unwrap(), BytesMut::from(&[i; 3][..]))
            })
            .collect();
        let mut batch = Sender::new();
        let mut sent = 0;
        while sent < datagrams.len() {
            sender.writable().await.unwrap();
            match batch.send(&sender, &datagrams[sent..]) {
                Ok(n) => sent += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("{error}"),
            }
        }
        let mut buffer = [0u8; 16];
        for (socket, parity) in [(&first, 0u8), (&second, 1)] {
            for i in (0..70u8).filter(|i| i % 2 == parity) {
                let (n, from) = socket.recv_from(&mut buffer).await.unwrap();
                assert_eq!(
                    (&buffer[..n], from),
                    (&[i; 3][..], sender.local_addr().unwrap())
                );
            }
        }
    }
}
