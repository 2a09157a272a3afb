//! The RPC client against the RPC server in-process (over a socket pair), against a real
//! `borg serve`, and the server against hostile input.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread::JoinHandle;

use common::ShutdownOnDrop;
use rborg_remote::msgpack::{self, Value, CLIENT_LIMITS};
use rborg_remote::{serve, OpenArgs, RemoteRepository, ServeOptions};
use rborg_repository::{Error, Repository};

/// A server thread on one end of a socket pair, the client on the other.
fn connect(
    opts: ServeOptions,
    open: &OpenArgs,
) -> (
    rborg_repository::Result<RemoteRepository>,
    JoinHandle<Vec<u8>>,
) {
    let (client, server) = UnixStream::pair().unwrap();
    let handle = std::thread::spawn(move || {
        let mut r = server.try_clone().unwrap();
        let mut w = server;
        let mut log = Vec::new();
        serve(&mut r, &mut w, &mut log, &opts).unwrap();
        log
    });
    let reader = client.try_clone().unwrap();
    let repo = RemoteRepository::connect(
        Box::new(reader),
        Box::new(ShutdownOnDrop(client)),
        "test-location",
        open,
    );
    (repo, handle)
}

fn create_args(path: &Path) -> OpenArgs {
    OpenArgs {
        create: true,
        exclusive: Some(true),
        ..OpenArgs::new(path.to_str().unwrap())
    }
}

#[test]
fn client_and_server_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let (repo, server) = connect(ServeOptions::default(), &create_args(&path));
    let mut repo = repo.unwrap();
    let ids: Vec<[u8; 32]> = (0..200u8).map(|i| [i; 32]).collect();
    for (n, id) in ids.iter().enumerate() {
        repo.put(id, &vec![n as u8; n * 100]).unwrap();
    }
    repo.commit(true, 0.1).unwrap();
    assert_eq!(repo.len().unwrap(), 200);
    // pipelined reads, more than one window
    let got = repo.get_many(&ids).unwrap();
    for (n, data) in got.iter().enumerate() {
        assert_eq!(data, &vec![n as u8; n * 100]);
    }
    let mut listed = repo.list(None, None).unwrap();
    listed.sort();
    assert_eq!(listed, ids);
    assert_eq!(repo.scan(Some(10), None).unwrap().len(), 10);
    // typed errors
    match repo.get(&[0xee; 32]) {
        Err(Error::ObjectNotFound { id, repo }) => {
            assert_eq!(id, "ee".repeat(32));
            assert_eq!(repo, "test-location");
        }
        other => panic!("expected ObjectNotFound, got {:?}", other.map(|d| d.len())),
    }
    assert!(!repo.contains(&[0xee; 32]).unwrap());
    assert!(repo.contains(&ids[3]).unwrap());
    // delete reports a missing object at once, and the stream stays in sync
    assert!(matches!(
        repo.delete(&[0xdd; 32]),
        Err(Error::ObjectNotFound { .. })
    ));
    repo.rollback().unwrap();
    assert_eq!(repo.len().unwrap(), 200);
    // key and nonce calls
    repo.save_key(b"key text").unwrap();
    assert_eq!(repo.load_key().unwrap(), b"key text");
    assert_eq!(repo.get_free_nonce().unwrap(), None);
    repo.commit_nonce_reservation(0x100, None).unwrap();
    assert_eq!(repo.get_free_nonce().unwrap(), Some(0x100));
    assert!(repo.check(false, false).unwrap());
    let id = repo.id();
    repo.close().unwrap();
    server.join().unwrap();
    // the data is really in the local repository
    let mut local =
        rborg_repository::LocalRepository::open(&path, &rborg_repository::OpenOptions::default())
            .unwrap();
    assert_eq!(local.id(), id);
    assert_eq!(local.get(&ids[7]).unwrap(), vec![7u8; 700]);
}

#[test]
fn preloaded_reads_are_taken_in_order_and_skips_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, server) = connect(
        ServeOptions::default(),
        &create_args(&dir.path().join("repo")),
    );
    let mut repo = repo.unwrap();
    let ids: Vec<[u8; 32]> = (0..300u16)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..2].copy_from_slice(&i.to_be_bytes());
            id
        })
        .collect();
    let data = |n: usize| vec![(n % 251) as u8; n * 10];
    for (n, id) in ids.iter().enumerate() {
        repo.put(id, &data(n)).unwrap();
    }
    repo.commit(false, 0.1).unwrap();
    let missing = [0xee; 32];

    // more announced than one window: the rest is sent as replies are taken
    repo.preload(&ids).unwrap();
    let got = repo.get_many(&ids[..10]).unwrap();
    assert!(got.iter().enumerate().all(|(n, d)| *d == data(n)));
    // a skip drops the announcements before it
    assert_eq!(repo.get(&ids[50]).unwrap(), data(50));
    // a read never announced works and leaves the announcements alone
    assert!(matches!(
        repo.get(&missing),
        Err(Error::ObjectNotFound { .. })
    ));
    assert_eq!(repo.get(&ids[51]).unwrap(), data(51));
    // beyond the first window, and an id that was dropped is read directly
    let got = repo.get_many(&ids[200..210]).unwrap();
    assert!(got.iter().zip(200..).all(|(d, n)| *d == data(n)));
    assert_eq!(repo.get(&ids[20]).unwrap(), data(20));
    // an announced read that fails reports its own error, in its turn
    repo.preload(&[missing, ids[5]]).unwrap();
    assert!(matches!(
        repo.get(&missing),
        Err(Error::ObjectNotFound { .. })
    ));
    assert_eq!(repo.get(&ids[5]).unwrap(), data(5));
    // any other call drops what is still announced; the stream stays in sync
    repo.preload(&ids[100..]).unwrap();
    assert_eq!(repo.len().unwrap(), 300);
    let got = repo.get_many(&ids).unwrap();
    assert!(got.iter().enumerate().all(|(n, d)| *d == data(n)));
    repo.close().unwrap();
    server.join().unwrap();
}

#[test]
fn open_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (repo, server) = connect(
        ServeOptions::default(),
        &OpenArgs::new(missing.to_str().unwrap()),
    );
    assert!(matches!(repo, Err(Error::DoesNotExist(l)) if l == "test-location"));
    server.join().unwrap();

    let path = dir.path().join("repo");
    let (repo, server) = connect(ServeOptions::default(), &create_args(&path));
    repo.unwrap().close().unwrap();
    server.join().unwrap();
    let (repo, server) = connect(ServeOptions::default(), &create_args(&path));
    assert!(matches!(repo, Err(Error::AlreadyExists(_))));
    server.join().unwrap();
}

#[test]
fn restrictions_refuse_paths_outside() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    let opts = ServeOptions {
        restrict_to_paths: vec![allowed.clone()],
        ..Default::default()
    };
    // a sibling sharing the prefix, and a path escaping with ..
    for bad in [dir.path().join("allowed_not"), allowed.join("../elsewhere")] {
        let (repo, server) = connect(opts.clone(), &create_args(&bad));
        match repo {
            Err(Error::PathNotAllowed(p)) => {
                assert!(!p.starts_with(&format!("{}/", allowed.display())))
            }
            other => panic!("expected PathNotAllowed for {bad:?}, got {:?}", other.err()),
        }
        server.join().unwrap();
        assert!(!bad.exists());
    }
    let (repo, server) = connect(opts, &create_args(&allowed.join("sub/repo")));
    // parent missing: the path is allowed, borg's create then fails on the parent
    assert!(!matches!(repo, Err(Error::PathNotAllowed(_))));
    drop(repo);
    server.join().unwrap();

    let repo_opts = ServeOptions {
        restrict_to_repositories: vec![allowed.join("r")],
        ..Default::default()
    };
    let (repo, server) = connect(repo_opts.clone(), &create_args(&allowed.join("r")));
    repo.unwrap().close().unwrap();
    server.join().unwrap();
    let (repo, server) = connect(repo_opts, &create_args(&allowed.join("r/inner")));
    assert!(matches!(repo, Err(Error::PathNotAllowed(_))));
    server.join().unwrap();
}

/// Runs the server over `input` and returns its replies.
fn serve_bytes(input: &[u8]) -> (Result<(), rborg_remote::ServeError>, Vec<Value>) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = serve(
        &mut &input[..],
        &mut out,
        &mut err,
        &ServeOptions::default(),
    );
    let mut replies = Vec::new();
    let mut pos = 0;
    while let Ok(Some((v, n))) = msgpack::decode(&out[pos..], &CLIENT_LIMITS) {
        replies.push(v);
        pos += n;
    }
    assert_eq!(pos, out.len(), "the server wrote only whole replies");
    (r, replies)
}

fn request(msgid: i128, method: &str, args: Vec<(&str, Value)>) -> Vec<u8> {
    msgpack::to_vec(&Value::map(vec![
        ("i", Value::Int(msgid)),
        ("m", Value::bytes(method)),
        ("a", Value::map(args)),
    ]))
}

#[test]
fn server_replies_with_borg_errors() {
    let mut input = request(1, "negotiate", vec![("client_data", Value::Int(2))]);
    input.extend(request(2, "get", vec![("id", Value::bytes(vec![0u8; 32]))]));
    input.extend(request(3, "no_such_method", vec![]));
    input.extend(request(4, "open", vec![]));
    // legacy tuple format
    input.extend(msgpack::to_vec(&Value::Array(vec![
        Value::Int(1),
        Value::Int(5),
        Value::bytes("__len__"),
        Value::Array(vec![]),
    ])));
    let (r, replies) = serve_bytes(&input);
    assert!(r.is_ok());
    assert_eq!(replies.len(), 5);
    assert_eq!(replies[0].get("r"), Some(&Value::Int(2)));
    let class = |v: &Value| {
        v.get("exception_class")
            .and_then(Value::as_bytes)
            .map(|b| b.to_vec())
    };
    assert_eq!(class(&replies[1]), Some(b"AttributeError".to_vec()));
    assert_eq!(class(&replies[2]), Some(b"InvalidRPCMethod".to_vec()));
    assert_eq!(class(&replies[3]), Some(b"TypeError".to_vec()));
    match &replies[4] {
        Value::Array(t) => {
            assert_eq!(t[1], Value::Int(5));
            assert_eq!(t[2], Value::bytes("AttributeError"));
        }
        other => panic!("expected a tuple reply, got {other:?}"),
    }
}

#[test]
fn server_survives_hostile_input() {
    let valid = [
        request(1, "negotiate", vec![("client_data", Value::map(vec![]))]),
        request(2, "open", vec![("path", Value::bytes("/nonexistent/x/y"))]),
        request(
            3,
            "put",
            vec![("id", Value::bytes(vec![1u8; 5])), ("data", Value::Nil)],
        ),
    ]
    .concat();
    // every truncation of a valid stream ends cleanly
    for cut in 0..valid.len() {
        let (r, _) = serve_bytes(&valid[..cut]);
        assert!(r.is_ok(), "cut at {cut}");
    }
    // huge declared lengths are refused without allocating
    for bad in [
        vec![0xdb, 0xff, 0xff, 0xff, 0xff],
        vec![0xdd, 0xff, 0xff, 0xff, 0xff],
        vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        vec![0x91; 100],
        vec![0xc1],
        vec![0x05],
        msgpack::to_vec(&Value::map(vec![("i", Value::Int(1))])),
    ] {
        let (r, replies) = serve_bytes(&bad);
        assert!(r.is_err(), "{bad:?}");
        assert!(replies.is_empty());
    }
    // many maximal strings in one message: cut off at the buffer limit, not buffered without end
    let mut huge = vec![0x94]; // array of 4
    for _ in 0..4 {
        huge.extend([0xdb, 0x01, 0x40, 0x00, 0x00]); // str32 of 20 MiB
        huge.extend(std::iter::repeat_n(b'x', 20 * 1024 * 1024));
    }
    let (r, replies) = serve_bytes(&huge);
    assert!(r.is_err());
    assert!(replies.is_empty());
    // pseudo random bytes (a fixed xorshift stream): never a panic
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..300 {
        let mut data = valid.clone();
        for _ in 0..(round % 8 + 1) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let pos = (x as usize) % data.len();
            data[pos] = (x >> 32) as u8;
        }
        let _ = serve_bytes(&data);
    }
}

#[test]
fn client_against_real_borg_serve() {
    if !rborg_testkit::borg_available("remote client interop test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repo");
    let argv = vec![rborg_testkit::BORG.to_string(), "serve".to_string()];
    let sink: rborg_remote::LogSink = std::sync::Arc::new(|_| {});
    let mut repo =
        RemoteRepository::spawn(&argv, "borg-location", &create_args(&path), sink.clone()).unwrap();
    assert!(repo.server_version().starts_with(&[1, 2, 4]));
    let ids: Vec<[u8; 32]> = (0..150u8).map(|i| [i; 32]).collect();
    for id in &ids {
        repo.put(id, &id[..]).unwrap();
    }
    repo.commit(true, 0.1).unwrap();
    assert_eq!(repo.len().unwrap(), 150);
    let got = repo.get_many(&ids).unwrap();
    assert!(got.iter().zip(&ids).all(|(g, id)| g == &id[..]));
    assert!(matches!(
        repo.get(&[0xfe; 32]),
        Err(Error::ObjectNotFound { .. })
    ));
    assert_eq!(repo.list(Some(5), None).unwrap().len(), 5);
    assert!(repo.check(false, false).unwrap());
    repo.close().unwrap();
    let open = OpenArgs::new(path.join("nope").to_str().unwrap());
    assert!(matches!(
        RemoteRepository::spawn(&argv, "borg-location", &open, sink),
        Err(Error::DoesNotExist(_))
    ));
    // what rborg's client wrote, borg's own repository code reads
    let script = "import sys\nfrom borg.logger import setup_logging\nsetup_logging()\n\
                  from borg.repository import Repository\n\
                  with Repository(sys.argv[1]) as r:\n    print(len(r), r.get(bytes([7]*32)).hex())";
    let out = rborg_testkit::python(script, [path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("150 {}", "07".repeat(32)));
}

#[test]
fn reader_eof_before_reply_is_connection_closed() {
    // a "server" that closes immediately
    let (client, server) = UnixStream::pair().unwrap();
    drop(server);
    let reader = client.try_clone().unwrap();
    let r = RemoteRepository::connect(
        Box::new(reader),
        Box::new(client),
        "x",
        &OpenArgs::new("/x"),
    );
    assert!(matches!(r, Err(Error::ConnectionClosed(_))));
    // a server that sends garbage
    let (client, mut server) = UnixStream::pair().unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 100];
        let _ = server.read(&mut buf);
        let _ = server.write_all(&[0xc1, 0xc1]);
    });
    let reader = client.try_clone().unwrap();
    let r = RemoteRepository::connect(
        Box::new(reader),
        Box::new(client),
        "x",
        &OpenArgs::new("/x"),
    );
    assert!(matches!(r, Err(Error::UnexpectedRpcData(_))));
    t.join().unwrap();
}

#[test]
fn upload_ratelimit_slows_down_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, server) = connect(ServeOptions::default(), &create_args(&dir.path().join("r")));
    let mut repo = repo.unwrap();
    repo.set_upload_ratelimit(400_000);
    let started = std::time::Instant::now();
    for i in 0..6u8 {
        repo.put(&[i; 32], &vec![i; 100_000]).unwrap();
    }
    repo.commit(false, 0.1).unwrap();
    // 600 kB at 400 kB/s
    assert!(started.elapsed() >= std::time::Duration::from_millis(1400));
    assert_eq!(repo.get(&[5; 32]).unwrap(), vec![5u8; 100_000]);
    repo.close().unwrap();
    server.join().unwrap();
}
