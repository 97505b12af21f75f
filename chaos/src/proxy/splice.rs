//! Zero-copy forwarding for a direction with no toxic: `splice(2)` from the source socket into
//! a pipe and from the pipe into the destination socket, so the bytes never enter user space.
//!
//! # Implementation details
//! A [`Pipe`] belongs to one direction of one connection and is made with its first bulk read
//! (`forward` copies small messages; an idle connection holds no pipe). It starts at the
//! kernel's default size (64 KiB, 16 pages) and grows to [`GROWN`] the first time one splice
//! fills it, so a bulk transfer moves up to 1 MiB per system call pair.
//!
//! The link drains the pipe completely before it looks at its toxics again: the pipe is empty
//! whenever the link switches to the toxic path (a toxic was added), so no byte is held in
//! the kernel while later ones go through the chain, and the order of the stream is kept.
//! Readiness is tokio's: a splice that would block clears the socket's readiness through
//! `try_io`, exactly as a `try_read` does.
//!
//! Only on Linux; elsewhere, and when a pipe cannot be made (out of descriptors), the link
//! copies through user space as before.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, ready};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// The size a pipe grows to once a single splice fills it (the default `pipe-max-size`).
const GROWN: usize = 1 << 20;

/// One direction's pipe, and the bytes it holds now.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    held: usize,
    /// The pipe's capacity now.
    size: usize,
    /// Whether it was asked to grow (once, whatever the answer).
    grown: bool,
}

impl Pipe {
    /// A new, empty pipe (non-blocking, closed on exec).
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // Safety: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // Safety: pipe2 succeeded, so both are open descriptors that nothing else owns.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Safety: F_GETPIPE_SZ on an open pipe takes no argument.
        let size = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ) };
        Ok(Pipe {
            read,
            write,
            held: 0,
            size: usize::try_from(size).unwrap_or(64 * 1024),
            grown: false,
        })
    }

    /// Moves what `src` has ready into the pipe (the pipe must be empty). `Ok(0)` is the end
    /// of the stream; `WouldBlock` means nothing is ready (and clears `src`'s readiness).
    pub(crate) fn fill(&mut self, src: &TcpStream) -> io::Result<usize> {
        debug_assert_eq!(self.held, 0, "the pipe is drained before it is filled");
        let n = src.try_io(Interest::READABLE, || {
            splice(src.as_raw_fd(), self.write.as_raw_fd(), GROWN)
        })?;
        self.held = n;
        if n >= self.size && !self.grown {
            self.grow();
        }
        Ok(n)
    }

    /// The bytes the pipe holds now.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Moves everything the pipe holds to `dst` (`Pending` until `dst` took it all).
    pub(crate) fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
        dst: &TcpStream,
    ) -> Poll<io::Result<()>> {
        while self.held > 0 {
            ready!(dst.poll_write_ready(cx))?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(self.read.as_raw_fd(), dst.as_raw_fd(), self.held)
            }) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.held -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Grows the pipe to [`GROWN`] (best effort: a limit on pipe sizes keeps it as it is).
    fn grow(&mut self) {
        self.grown = true;
        // Safety: F_SETPIPE_SZ on an open pipe takes the new size as an int.
        let size = unsafe { libc::fcntl(self.write.as_raw_fd(), libc::F_SETPIPE_SZ, GROWN as i32) };
        if let Ok(size) = usize::try_from(size) {
            self.size = size;
        }
    }
}

/// One `splice(2)` of up to `len` bytes from `from` to `to`, neither blocking.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // Safety: both descriptors are open for the duration of the call (borrowed from the
    // socket and the pipe), and null offsets are what splice takes for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}
