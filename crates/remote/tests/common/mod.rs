//! Helpers shared by the remote crate's integration tests.

use std::io::Write;
use std::os::unix::net::UnixStream;

/// The client's writing end: dropping it ends the server's input, as closing ssh's stdin does
/// (the client's reader thread holds a clone of the socket, so dropping alone would not).
pub struct ShutdownOnDrop(pub UnixStream);

impl Write for ShutdownOnDrop {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Write);
    }
}
