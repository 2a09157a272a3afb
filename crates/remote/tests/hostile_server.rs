//! The RPC client against a malicious `borg serve` (issue 10): a man in the middle between the
//! client and a real (in-process) rborg server rewrites one reply of an ordinary session (every
//! reply in turn, for each kind of damage) and then hangs up. Whatever it sends, the client
//! must return a typed error: no panic, no hang, no allocation of what a hostile length prefix
//! announces, and never the wrong data as if it were right.
//!
//! The server side (a malicious client) is `rpc.rs`'s `server_survives_hostile_input` and the
//! `rpc_server` fuzz target.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use common::ShutdownOnDrop;
use rborg_remote::msgpack::{self, Value, CLIENT_LIMITS};
use rborg_remote::{serve, OpenArgs, RemoteRepository, ServeOptions};
use rborg_repository::{Error, Repository};

/// How one reply is damaged.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// A bin header announcing 4 GiB, then a few bytes.
    HugeLength,
    /// 100 000 nested one-element arrays (a stack-overflow attempt).
    DeepNesting,
    /// Bytes that are not msgpack (0xc1 is never used).
    Garbage,
    /// The first half of the reply.
    Truncated,
    /// The reply answers another request.
    WrongMsgid,
    /// The result has the wrong type (an int where bytes, lists or maps are expected).
    WrongType,
    /// An exception reply with a 1 MB class name and odd arguments.
    HugeException,
    /// Another object's data in place of the requested one (`get`).
    SwappedData,
}

const DAMAGES: [Damage; 8] = [
    Damage::HugeLength,
    Damage::DeepNesting,
    Damage::Garbage,
    Damage::Truncated,
    Damage::WrongMsgid,
    Damage::WrongType,
    Damage::HugeException,
    Damage::SwappedData,
];

/// `reply` damaged `how`, or `None` where that damage does not apply to this reply (swapped
/// data in a reply without data, a wrong type where there is no result).
fn damage(reply: &[u8], how: Damage) -> Option<Vec<u8>> {
    let value = msgpack::decode(reply, &CLIENT_LIMITS)
        .expect("the server's reply decodes")
        .expect("a whole reply")
        .0;
    let with = |key: &str, new: Value| match &value {
        Value::Map(entries) => {
            let mut entries = entries.clone();
            let slot = entries
                .iter_mut()
                .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))?;
            slot.1 = new;
            Some(msgpack::to_vec(&Value::Map(entries)))
        }
        _ => None,
    };
    Some(match how {
        Damage::HugeLength => vec![0xc6, 0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        Damage::DeepNesting => {
            let mut v = vec![0x91; 100_000];
            v.push(0xc0);
            v
        }
        Damage::Garbage => vec![0xc1; 64],
        Damage::Truncated => reply[..reply.len() / 2].to_vec(),
        Damage::WrongMsgid => with("i", Value::Int(987_654))?,
        Damage::WrongType => with("r", Value::Int(-7))?,
        Damage::HugeException => msgpack::to_vec(&Value::map(vec![
            ("i", value.get("i").cloned().unwrap_or(Value::Int(1))),
            ("exception_class", Value::bytes(vec![b'X'; 1_000_000])),
            (
                "exception_args",
                Value::Array(vec![Value::Int(1), Value::Map(vec![])]),
            ),
            ("exception_full", Value::Int(3)),
        ])),
        Damage::SwappedData => match value.get("r") {
            Some(Value::Bytes(data)) => {
                let mut other = data.clone();
                if let Some(b) = other.last_mut() {
                    *b ^= 1;
                }
                with("r", Value::Bytes(other))?
            }
            _ => return None,
        },
    })
}

/// Server -> client: passes replies on, damaging reply number `target` (if any) and hanging up
/// after it. Returns how many replies passed and whether one was damaged.
fn relay_replies(
    mut from_server: UnixStream,
    mut to_client: UnixStream,
    target: Option<(usize, Damage)>,
) -> (usize, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut count = 0;
    loop {
        while let Ok(Some((_, n))) = msgpack::decode(&buf, &CLIENT_LIMITS) {
            let reply: Vec<u8> = buf.drain(..n).collect();
            let damaged = match target {
                Some((k, how)) if k == count => damage(&reply, how),
                _ => None,
            };
            if let Some(damaged) = damaged {
                let _ = to_client.write_all(&damaged);
                let _ = to_client.shutdown(std::net::Shutdown::Both);
                return (count + 1, true);
            }
            if to_client.write_all(&reply).is_err() {
                return (count, false);
            }
            count += 1;
        }
        match from_server.read(&mut chunk) {
            Ok(0) | Err(_) => return (count, false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Client -> server: bytes pass unchanged; the end of the client's input ends the server's.
fn relay_requests(mut from_client: UnixStream, mut to_server: UnixStream) {
    let _ = std::io::copy(&mut from_client, &mut to_server);
    let _ = to_server.shutdown(std::net::Shutdown::Write);
}

/// An ordinary session: create, put, commit, list, pipelined gets, a missing object, key calls.
/// Data that comes back wrong is an error too.
fn session(client: UnixStream, path: &Path) -> Result<(), Error> {
    let reader = client.try_clone().unwrap();
    let open = OpenArgs {
        create: true,
        exclusive: Some(true),
        ..OpenArgs::new(path.to_str().unwrap())
    };
    let mut repo = RemoteRepository::connect(
        Box::new(reader),
        Box::new(ShutdownOnDrop(client)),
        "mitm",
        &open,
    )?;
    let ids: Vec<[u8; 32]> = (0..5u8).map(|i| [i; 32]).collect();
    let data = |i: usize| vec![i as u8; 1000 + i];
    for (i, id) in ids.iter().enumerate() {
        repo.put(id, &data(i))?;
    }
    repo.commit(true, 0.1)?;
    let mut listed = repo.list(None, None)?;
    listed.sort();
    if listed != ids {
        return Err(Error::InvalidArgument("wrong list".into()));
    }
    for (i, got) in repo.get_many(&ids)?.into_iter().enumerate() {
        if got != data(i) {
            return Err(Error::InvalidArgument("wrong data".into()));
        }
    }
    match repo.get(&[0xee; 32]) {
        Err(Error::ObjectNotFound { .. }) => {}
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::InvalidArgument("a missing object came back".into())),
    }
    repo.save_key(b"key")?;
    if repo.load_key()? != b"key" {
        return Err(Error::InvalidArgument("wrong key".into()));
    }
    repo.close()
}

/// One session through the man in the middle; panics if the client hangs or panics. Returns
/// the session's result, the number of replies and whether one was damaged.
fn run(target: Option<(usize, Damage)>) -> (Result<(), Error>, usize, bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let (client, proxy_client) = UnixStream::pair().unwrap();
    let (proxy_server, server) = UnixStream::pair().unwrap();
    let server_thread = std::thread::spawn(move || {
        let mut r = server.try_clone().unwrap();
        let mut w = server;
        let _ = serve(&mut r, &mut w, &mut Vec::new(), &ServeOptions::default());
    });
    let (up_from, up_to) = (
        proxy_client.try_clone().unwrap(),
        proxy_server.try_clone().unwrap(),
    );
    let up = std::thread::spawn(move || relay_requests(up_from, up_to));
    let down = std::thread::spawn(move || relay_replies(proxy_server, proxy_client, target));
    let (tx, rx) = mpsc::channel();
    let session_path = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(session(client, &session_path));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{target:?}: the client hung or panicked ({e})"));
    let (replies, damaged) = down.join().unwrap();
    up.join().unwrap();
    server_thread.join().unwrap();
    (result, replies, damaged)
}

#[test]
fn every_damaged_reply_gives_a_typed_error() {
    let (honest, replies, _) = run(None);
    honest.expect("the undamaged session works");
    assert!(replies >= 8, "only {replies} replies in the session");
    let mut tried = 0;
    for how in DAMAGES {
        for k in 0..replies {
            let (result, _, damaged) = run(Some((k, how)));
            if !damaged {
                result.unwrap_or_else(|e| panic!("{how:?} does not apply to reply {k}: {e}"));
                continue;
            }
            // the connection ends after the damaged reply, so the session cannot complete
            let err = result.expect_err(&format!("{how:?} at reply {k} went unnoticed"));
            assert!(
                !err.to_string().is_empty(),
                "{how:?} at reply {k}: an error without a message"
            );
            tried += 1;
        }
    }
    assert!(tried >= 6 * replies, "only {tried} damaged sessions");
    eprintln!("{tried} damaged sessions of {replies} replies each, every one refused");
}
