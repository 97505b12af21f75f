//! Kernel-side forwarding between the two sockets of a proxied connection: an eBPF sockmap.
//!
//! Evaluated for issue 32 (BENCHMARKS.md, "Kernel-side redirection"): it is not part of the
//! proxy's data path. A [`SockMap`] holds a `BPF_MAP_TYPE_SOCKHASH` and a stream verdict
//! program attached to it. [`SockMap::pair`] puts both sockets of a connection in the map, each
//! keyed by the *other* socket's cookie, so the program, which runs on every packet a member
//! socket receives, looks up the receiving socket's cookie and redirects the packet to the
//! egress of its peer: the bytes never wake user space. A packet whose socket has no peer in
//! the map (a pair half made) passes to its own socket as usual.
//!
//! The program is twelve instructions, written here as bytecode (no compiler or BPF toolchain
//! needed):
//!
//! ```text
//! r6 = r1                                  ; the packet
//! r0 = bpf_get_socket_cookie(r1)           ; the receiving socket's cookie
//! *(u64 *)(r10 - 8) = r0
//! r1 = r6; r2 = <map>; r3 = r10 - 8; r4 = 0
//! bpf_sk_redirect_hash(r1, r2, r3, r4)     ; to the peer's egress, if it is in the map
//! r0 = SK_PASS; exit                        ; redirected, or delivered to its own socket
//! ```
//!
//! Loading it takes `CAP_BPF` and `CAP_NET_ADMIN` (root here); [`SockMap::new`] says why it
//! could not when it cannot.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `bpf(2)` commands, map, program and attach types, and helpers (linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_MAP_TYPE_SOCKHASH: u32 = 18;
const BPF_PROG_TYPE_SK_SKB: u32 = 14;
const BPF_SK_SKB_VERDICT: u32 = 38;
const BPF_SK_SKB_STREAM_VERDICT: u32 = 5;
const HELPER_GET_SOCKET_COOKIE: i32 = 46;
const HELPER_SK_REDIRECT_HASH: i32 = 72;
const SK_PASS: i32 = 1;
const SO_COOKIE: libc::c_int = 57;

/// Sockets the map can hold (two per connection).
const CAPACITY: u32 = 65_536;

/// A sockhash with the redirecting verdict program attached.
#[derive(Debug)]
pub struct SockMap {
    map: OwnedFd,
    _prog: OwnedFd,
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> io::Result<i64> {
    // Safety: `attr` is a zeroed `union bpf_attr` of the size passed, with the fields of `cmd`
    // set; every pointer in it points into memory that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn put_u32(attr: &mut [u8; 128], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(attr: &mut [u8; 128], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn owned(fd: i64) -> OwnedFd {
    // Safety: `bpf(2)` returned this descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

impl SockMap {
    /// Creates the map, loads the program and attaches it. Fails (with the kernel's reason)
    /// without the privileges or the kernel support.
    pub fn new() -> io::Result<SockMap> {
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, BPF_MAP_TYPE_SOCKHASH);
        put_u32(&mut attr, 4, 8); // key: a socket cookie
        put_u32(&mut attr, 8, 4); // value: a socket's descriptor
        put_u32(&mut attr, 12, CAPACITY);
        let map = owned(bpf(BPF_MAP_CREATE, &mut attr)?);

        let fd = map.as_raw_fd();
        let prog = [
            insn(0xbf, 6, 1, 0, 0),                        // r6 = r1
            insn(0x85, 0, 0, 0, HELPER_GET_SOCKET_COOKIE), // call
            insn(0x7b, 10, 0, -8, 0),                      // *(u64 *)(r10 - 8) = r0
            insn(0xbf, 1, 6, 0, 0),                        // r1 = r6
            insn(0x18, 2, 1, 0, fd),                       // r2 = map (ld_imm64, pseudo map fd)
            insn(0, 0, 0, 0, 0),
            insn(0xbf, 3, 10, 0, 0),                      // r3 = r10
            insn(0x07, 3, 0, 0, -8),                      // r3 += -8
            insn(0xb7, 4, 0, 0, 0),                       // r4 = 0
            insn(0x85, 0, 0, 0, HELPER_SK_REDIRECT_HASH), // call
            insn(0xb7, 0, 0, 0, SK_PASS),                 // r0 = SK_PASS
            insn(0x95, 0, 0, 0, 0),                       // exit
        ];
        let license = b"GPL\0";
        let mut log = vec![0u8; 4096];
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_SK_SKB);
        put_u32(&mut attr, 4, prog.len() as u32);
        put_u64(&mut attr, 8, prog.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        put_u32(&mut attr, 24, 1); // log level
        put_u32(&mut attr, 28, log.len() as u32);
        put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        let prog = match bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => owned(fd),
            Err(e) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                let why = String::from_utf8_lossy(&log[..end]);
                return Err(io::Error::new(
                    e.kind(),
                    format!("the verdict program was refused: {e}: {}", why.trim()),
                ));
            }
        };
        let attach = |kind: u32| {
            let mut attr = [0u8; 128];
            put_u32(&mut attr, 0, map.as_raw_fd() as u32);
            put_u32(&mut attr, 4, prog.as_raw_fd() as u32);
            put_u32(&mut attr, 8, kind);
            bpf(BPF_PROG_ATTACH, &mut attr)
        };
        // The verdict without a stream parser (Linux 5.13 on), else the stream verdict.
        attach(BPF_SK_SKB_VERDICT).or_else(|_| attach(BPF_SK_SKB_STREAM_VERDICT))?;
        Ok(SockMap { map, _prog: prog })
    }

    /// Redirects each socket's incoming bytes to the other's egress, in the kernel.
    pub fn pair(&self, a: &impl AsRawFd, b: &impl AsRawFd) -> io::Result<()> {
        self.insert(cookie(a)?, b)?;
        self.insert(cookie(b)?, a)
    }

    /// Ends the redirection of a pair (closing a socket ends it too).
    pub fn unpair(&self, a: &impl AsRawFd, b: &impl AsRawFd) -> io::Result<()> {
        for s in [a.as_raw_fd(), b.as_raw_fd()] {
            let key = cookie(&s)?;
            let mut attr = [0u8; 128];
            put_u32(&mut attr, 0, self.map.as_raw_fd() as u32);
            put_u64(&mut attr, 8, &key as *const u64 as u64);
            bpf(BPF_MAP_DELETE_ELEM, &mut attr)?;
        }
        Ok(())
    }

    fn insert(&self, key: u64, socket: &impl AsRawFd) -> io::Result<()> {
        let value = socket.as_raw_fd() as u32;
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, self.map.as_raw_fd() as u32);
        put_u64(&mut attr, 8, &key as *const u64 as u64);
        put_u64(&mut attr, 16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
    }
}

/// The kernel's cookie of a socket (`SO_COOKIE`), the key its peer is stored under.
fn cookie(socket: &impl AsRawFd) -> io::Result<u64> {
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // Safety: SO_COOKIE writes a u64 into `cookie`, whose size `len` gives.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Bytes cross a paired connection both ways with nothing in user space reading them.
    #[tokio::test]
    async fn a_pair_forwards_both_ways_in_the_kernel() {
        let map = match SockMap::new() {
            Ok(map) => map,
            Err(e) => {
                eprintln!("unavailable: the sockmap needs root and BPF support: {e}");
                return;
            }
        };
        // An echo server, and a "proxy" that pairs its two sockets and never reads them.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front_addr = front.local_addr().unwrap();
        let (paired_tx, paired_rx) = tokio::sync::oneshot::channel();
        let proxy = tokio::spawn(async move {
            let (client, _) = front.accept().await.unwrap();
            let server = TcpStream::connect(echo_addr).await.unwrap();
            map.pair(&client, &server).unwrap();
            paired_tx.send(()).unwrap();
            // Hold the sockets open, unread.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            drop((client, server, map));
        });
        let mut c = TcpStream::connect(front_addr).await.unwrap();
        paired_rx.await.unwrap();
        let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        c.write_all(&msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(std::time::Duration::from_secs(10), c.read_exact(&mut back))
            .await
            .expect("the echo came back through the kernel")
            .unwrap();
        assert_eq!(back, msg);
        proxy.abort();
    }
}
