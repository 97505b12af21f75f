//! The framing and the wrapper, fed as a server and client would.

use super::*;

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

/// Feeds both directions as a server and client would, in chunks of `chunk` bytes.
fn run(up: &[u8], down: &[u8], chunk: usize) -> Arc<Session> {
    let session = Arc::new(Session::default());
    let mut t = Tracked::new((), Arc::clone(&session));
    for c in up.chunks(chunk) {
        let s = &t.session;
        t.up.feed(c, |e| {
            if let Event::Began(b'Q' | b'S') = e {
                s.sent_request();
            }
        });
    }
    for c in down.chunks(chunk) {
        let s = &t.session;
        t.down.feed(c, |e| match e {
            Event::FirstByte(b'Z', st) => s.got_ready(st),
            Event::FirstWord(b'K', pid) => s.pid.store(pid, Release),
            Event::Error(fields) => s.got_error(fields),
            _ => {}
        });
    }
    session
}

fn startup() -> Vec<u8> {
    let mut m = (8u32 + 9).to_be_bytes().to_vec();
    m.extend_from_slice(&196608u32.to_be_bytes());
    m.extend_from_slice(b"user\0app\0");
    m
}

#[test]
fn follows_the_transaction_status_at_any_chunking() {
    for chunk in [1, 2, 3, 7, 64, 4096] {
        // Start-up, then BEGIN (simple query), answered with ReadyForQuery 'T'.
        let mut up = startup();
        up.extend(msg(b'Q', b"BEGIN\0"));
        let mut down = msg(b'R', &[0, 0, 0, 0]);
        down.extend(msg(b'S', b"a\0b\0"));
        down.extend(msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]));
        down.extend(msg(b'Z', b"I"));
        down.extend(msg(b'C', b"BEGIN\0"));
        down.extend(msg(b'Z', b"T"));
        let session = run(&up, &down, chunk);
        assert_eq!(session.status(), SessionStatus::InTransaction, "{chunk}");
        assert_eq!(session.backend_pid(), Some(12345), "{chunk}");
        // ... then a failing extended query: Parse/Bind/Execute/Sync, error, 'E'.
        let mut up2 = up.clone();
        up2.extend(msg(b'P', b"\0SELECT 1/0\0\0\0"));
        up2.extend(msg(b'E', b"\0\0\0\0\0"));
        up2.extend(msg(b'S', b""));
        let mut down2 = down.clone();
        down2.extend(msg(b'E', b"SERROR\0\0"));
        down2.extend(msg(b'Z', b"E"));
        assert_eq!(
            run(&up2, &down2, chunk).status(),
            SessionStatus::FailedTransaction
        );
        // A query sent and not answered: busy, whatever the last status said.
        let mut up3 = up.clone();
        up3.extend(msg(b'Q', b"SELECT pg_sleep(5)\0"));
        assert_eq!(run(&up3, &down, chunk).status(), SessionStatus::Busy);
        // Until the start-up has answered, the session is busy too.
        assert_eq!(run(&startup(), &[], chunk).status(), SessionStatus::Busy);
    }
}

#[test]
fn a_write_refused_as_read_only_is_seen_at_any_chunking() {
    for chunk in [1, 2, 5, 13, 4096] {
        let up = startup();
        let mut down = msg(b'Z', b"I");
        // Another error first: a division by zero (22012) is not a refusal.
        down.extend(msg(b'E', b"SERROR\0VERROR\0C22012\0Mdivision by zero\0\0"));
        down.extend(msg(b'Z', b"I"));
        assert!(!run(&up, &down, chunk).refused_write(), "{chunk}");
        // A translated severity, then the code, then a message longer than what is kept.
        let long = format!(
            "SFEHLER\0VERROR\0C25006\0M{}\0\0",
            "cannot execute INSERT in a read-only transaction ".repeat(4)
        );
        down.extend(msg(b'E', long.as_bytes()));
        down.extend(msg(b'Z', b"I"));
        let session = run(&up, &down, chunk);
        assert!(session.refused_write(), "{chunk}");
        assert_eq!(session.status(), SessionStatus::Idle);
    }
    // The client's 'E' is Execute: never read as an error.
    let mut up = startup();
    up.extend(msg(b'E', b"C25006\0\0\0\0\0"));
    assert!(!run(&up, &msg(b'Z', b"I"), 3).refused_write());
}

#[test]
fn a_large_row_is_skipped_by_its_length() {
    let mut up = startup();
    up.extend(msg(b'Q', b"SELECT repeat('x', 100000)\0"));
    let mut down = msg(b'Z', b"I");
    down.extend(msg(b'D', &vec![b'Z'; 100_000]));
    down.extend(msg(b'Z', b"I"));
    assert_eq!(run(&up, &down, 1000).status(), SessionStatus::Idle);
}

#[tokio::test]
async fn drained_returns_once_the_answer_arrives() {
    let session = Arc::new(Session::default());
    assert_eq!(session.status(), SessionStatus::Busy);
    let s = Arc::clone(&session);
    let waiter = tokio::spawn(async move { s.drained().await });
    tokio::task::yield_now().await;
    session.got_ready(b'I');
    waiter.await.unwrap();
    assert_eq!(session.status(), SessionStatus::Idle);
}

/// The wrapper as tokio-postgres drives it: bytes pass unchanged both ways (written,
/// flushed, shut down), and the session follows them.
#[tokio::test]
async fn the_wrapper_passes_every_byte_and_tracks_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
    let (ours, mut server) = tokio::io::duplex(1 << 16);
    let session = Arc::new(Session::default());
    // Buffered below the wrapper, so a flush that is not passed on loses the bytes.
    let mut client = Tracked::new(BufWriter::new(ours), Arc::clone(&session));
    let mut up = startup();
    up.extend(msg(b'Q', b"BEGIN\0"));
    client.write_all(&up).await.unwrap();
    client.flush().await.unwrap();
    let mut got = vec![0u8; up.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        server.read_exact(&mut got),
    )
    .await
    .expect("flushed through")
    .unwrap();
    assert_eq!(got, up);
    assert_eq!(session.status(), SessionStatus::Busy);
    let mut down = msg(b'K', &[0, 0, 0x30, 0x39, 1, 2, 3, 4]);
    down.extend(msg(b'Z', b"I"));
    down.extend(msg(b'Z', b"T"));
    server.write_all(&down).await.unwrap();
    let mut read = vec![0u8; down.len()];
    client.read_exact(&mut read).await.unwrap();
    assert_eq!(read, down);
    assert_eq!(session.status(), SessionStatus::InTransaction);
    assert_eq!(session.backend_pid(), Some(12345));
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        server.read_to_end(&mut rest),
    )
    .await
    .expect("the shutdown reached the other end")
    .unwrap();
    assert!(rest.is_empty());
}

/// An `SSLRequest` and its one-byte answer are read as such: after `N` the plain start-up
/// is tracked; after `S` the ciphertext is passed unread (tracked above the TLS stream).
#[tokio::test]
async fn the_encryption_request_and_its_answer_are_read_as_such() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ssl_request = [0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    for answer in [b'N', b'S'] {
        let (ours, mut server) = tokio::io::duplex(1 << 16);
        let session = Arc::new(Session::default());
        let mut client = Tracked::new(ours, Arc::clone(&session));
        client.write_all(&ssl_request).await.unwrap();
        let mut got = [0u8; 8];
        server.read_exact(&mut got).await.unwrap();
        // The answer comes alone, then (here, for the test, in the same read) what follows.
        let mut down = vec![answer];
        down.extend(msg(b'Z', b"T"));
        server.write_all(&down).await.unwrap();
        let mut read = vec![0u8; down.len()];
        client.read_exact(&mut read).await.unwrap();
        client.write_all(&startup()).await.unwrap();
        client.write_all(&msg(b'Q', b"BEGIN\0")).await.unwrap();
        if answer == b'N' {
            // Start-up answered by 'T' above; the BEGIN is in flight.
            assert_eq!(session.status(), SessionStatus::Busy, "after N");
            server.write_all(&msg(b'Z', b"T")).await.unwrap();
            let mut z = [0u8; 6];
            client.read_exact(&mut z).await.unwrap();
            assert_eq!(session.status(), SessionStatus::InTransaction, "after N");
        } else {
            // Ciphertext both ways: nothing counted, the start-up still unanswered here.
            assert_eq!(client.encryption, Encryption::Encrypted);
            assert_eq!(session.sent.load(Acquire), 1);
            assert_eq!(session.ready.load(Acquire), 0, "after S");
        }
    }
}
