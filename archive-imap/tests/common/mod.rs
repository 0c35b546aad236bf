//! Helpers shared by archive-imap's socket-level tests.

#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One CRLF-terminated line, or what arrived before EOF ("" when closed), within 10 s.
pub async fn read_line(tcp: &mut TcpStream) -> String {
    let read = async {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match tcp.read(&mut byte).await {
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&line).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answers within 10 s")
}
