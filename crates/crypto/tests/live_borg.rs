//! Live cross-checks against borg 1.2.4 (`/usr/bin/python3` importing borg, and the `borg`
//! CLI) on freshly generated random keys and data. Without borg these tests print a notice
//! and pass, unless `RBORG_REQUIRE_BORG=1` is set, in which case they fail.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use rand::{Rng, RngCore};
use rborg_crypto::msgpack;
use rborg_crypto::tam::{self, TamContext};
use rborg_crypto::{paths, Key, KeyStorage, KeyType, NoRepoNonces, NonceManager, Passphrase};
use rmpv::Value;
use serde_json::{json, Value as J};

/// The python that has borg 1.2 (override with `RBORG_PYTHON`, e.g. to test the skip path).
fn python_bin() -> String {
    std::env::var("RBORG_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_string())
}

fn gen_script() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/gen/crypto.py").to_string()
}

fn borg_available(what: &str) -> bool {
    let ok = Command::new(python_bin())
        .args([
            "-c",
            "import borg.crypto.key; assert borg.__version__.startswith('1.2')",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Path::new("/usr/bin/borg").exists();
    if !ok {
        if std::env::var("RBORG_REQUIRE_BORG").as_deref() == Ok("1") {
            panic!("{what}: borg 1.2 not available but RBORG_REQUIRE_BORG=1");
        }
        eprintln!("NOTICE: {what}: borg 1.2 (/usr/bin/python3 + borg, /usr/bin/borg) not available, skipping");
    }
    ok
}

fn python(cmd: &str, req: &J, envs: &[(&str, &str)]) -> J {
    let mut child = Command::new(python_bin())
        .arg(gen_script())
        .arg(cmd)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python")
}

fn rand_bytes(rng: &mut impl RngCore, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

fn random_manifest(rng: &mut impl Rng) -> Value {
    let mut archives = Vec::new();
    for i in 0..rng.gen_range(0..5) {
        let mut id = [0u8; 32];
        rng.fill_bytes(&mut id);
        archives.push((
            Value::from(format!("archive-{i}-{}", rng.gen::<u32>())),
            Value::Map(vec![
                (Value::from("id"), Value::Binary(id.to_vec())),
                (
                    Value::from("time"),
                    Value::from("2024-05-06T07:08:09.123456"),
                ),
            ]),
        ));
    }
    Value::Map(vec![
        (Value::from("version"), Value::from(1)),
        (Value::from("archives"), Value::Map(archives)),
        (
            Value::from("timestamp"),
            Value::from("2024-05-06T07:08:10.000000"),
        ),
        (
            Value::from("config"),
            Value::Map(vec![(Value::from("tam_required"), Value::Boolean(true))]),
        ),
        (
            Value::from("item_keys"),
            Value::Array(vec![Value::from("chunks"), Value::from("path")]),
        ),
    ])
}

/// Our keys, envelopes, IDs and TAMs are accepted by borg; borg's envelopes for fresh data
/// are identical to ours and decrypt with our code.
#[test]
fn borg_opens_what_we_write() {
    if !borg_available("borg_opens_what_we_write") {
        return;
    }
    let mut rng = rand::thread_rng();
    for kt in KeyType::ALL {
        let mut repo_id = [0u8; 32];
        rng.fill_bytes(&mut repo_id);
        let key = Key::create(kt, repo_id);
        let pp = Passphrase::new(format!("pw-{}-ü", rng.gen::<u64>()));
        let key_text = match kt.storage() {
            KeyStorage::Keyfile => key.to_keyfile_string(&pp),
            KeyStorage::Repository => key.to_repokey_string(&pp),
            KeyStorage::None => String::new(),
        };
        let sizes = [0usize, 1, 15, 16, 17, 1000, 65536 + 3];
        let payloads: Vec<Vec<u8>> = sizes.iter().map(|&n| rand_bytes(&mut rng, n)).collect();
        let nonces: Vec<u64> = sizes
            .iter()
            .map(|_| rng.gen::<u64>() >> rng.gen_range(0..60))
            .collect();
        let envelopes: Vec<String> = payloads
            .iter()
            .zip(&nonces)
            .map(|(p, n)| hex::encode(key.encrypt(p, *n)))
            .collect();
        let manifest = random_manifest(&mut rng);
        let packed = tam::pack_and_authenticate(&key, &manifest, TamContext::Manifest).unwrap();
        let req = json!({
            "mode": kt.arg_name(),
            "repository_id": hex::encode(repo_id),
            "key_text": key_text,
            "passphrase": pp.as_str(),
            "id_inputs": payloads.iter().map(hex::encode).collect::<Vec<_>>(),
            "envelopes": envelopes,
            "manifests": [hex::encode(&packed)],
            "encrypt": payloads.iter().zip(&nonces).map(|(p, n)| json!({"payload": hex::encode(p), "nonce": n})).collect::<Vec<_>>(),
        });
        let res = python("live", &req, &[]);
        if kt != KeyType::Plaintext {
            let m = &res["material"];
            assert_eq!(m["enc_key"], hex::encode(key.enc_key()), "{kt:?}");
            assert_eq!(m["enc_hmac_key"], hex::encode(key.enc_hmac_key()));
            assert_eq!(m["id_key"], hex::encode(key.id_key()));
            assert_eq!(
                m["chunk_seed"].as_i64().unwrap(),
                i64::from(key.chunk_seed())
            );
            assert_eq!(m["tam_required"], true);
        }
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(
                res["id_hashes"][i],
                hex::encode(key.id_hash(p)),
                "{kt:?} id {i}"
            );
            assert_eq!(
                res["decrypted"][i]["payload"],
                hex::encode(p),
                "{kt:?} decrypt {i}: {}",
                res["decrypted"][i]
            );
            let borg_env = hex::decode(res["encrypted"][i].as_str().unwrap()).unwrap();
            assert_eq!(
                borg_env,
                key.encrypt(p, nonces[i]),
                "{kt:?} borg envelope {i}"
            );
            assert_eq!(&key.decrypt(None, &borg_env).unwrap(), p);
        }
        assert_eq!(
            res["manifests"][0]["verified"], true,
            "{kt:?}: {}",
            res["manifests"][0]
        );

        // borg refuses a tampered envelope and a tampered manifest too
        if kt.is_encrypted() {
            let mut bad = key.encrypt(&payloads[5], nonces[5]);
            let pos = rng.gen_range(1..bad.len());
            bad[pos] ^= 1 << rng.gen_range(0..8);
            let mut badm = packed.clone();
            let last = badm.len() - 1;
            badm[last] ^= 1;
            let req = json!({"mode": kt.arg_name(), "repository_id": hex::encode(repo_id), "key_text": key_text,
                             "passphrase": pp.as_str(), "envelopes": [hex::encode(&bad)], "manifests": [hex::encode(&badm)]});
            let res = python("live", &req, &[]);
            assert!(res["decrypted"][0]["error"]
                .as_str()
                .unwrap()
                .contains("IntegrityError"));
            assert!(res["manifests"][0]["error"]
                .as_str()
                .unwrap()
                .contains("TAMInvalid"));
        }
        // wrong passphrase is refused by borg as well
        if kt != KeyType::Plaintext {
            let req = json!({"mode": kt.arg_name(), "repository_id": hex::encode(repo_id), "key_text": key_text,
                             "passphrase": format!("{}!", pp.as_str())});
            assert_eq!(python("live", &req, &[])["error"], "passphrase wrong");
        }
    }
}

fn borg(args: &[&str], envs: &[(&str, String)]) {
    let out = Command::new("/usr/bin/borg")
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run borg");
    assert!(
        out.status.success(),
        "borg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `borg init` + `borg create` a real repository per encrypted/authenticated mode; we open
/// its key (repo config or keys dir), decrypt the manifest and archive objects borg wrote,
/// verify the manifest TAM and chunk IDs, and read borg's nonce file.
#[test]
fn we_open_repositories_borg_created() {
    if !borg_available("we_open_repositories_borg_created") {
        return;
    }
    let mut rng = rand::thread_rng();
    for kt in KeyType::ALL {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        let repo = tmp.path().join("repo");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), rand_bytes(&mut rng, 5000)).unwrap();
        let pw = format!("p{}", rng.gen::<u32>());
        let envs = vec![
            ("BORG_BASE_DIR", base.display().to_string()),
            ("BORG_PASSPHRASE", pw.clone()),
            (
                "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK",
                "yes".to_string(),
            ),
        ];
        let repo_s = repo.display().to_string();
        borg(&["init", "-e", kt.arg_name(), &repo_s], &envs);
        borg(
            &[
                "create",
                &format!("{repo_s}::a1"),
                &src.display().to_string(),
            ],
            &envs,
        );
        let env_pairs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = python("live-repo", &json!({"path": repo_s}), &env_pairs);

        let repo_id: [u8; 32] = hex::decode(res["repository_id"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let menv = hex::decode(res["manifest_envelope"].as_str().unwrap()).unwrap();
        assert_eq!(KeyType::from_manifest(&menv).unwrap(), kt);
        let pp = Passphrase::new(pw);
        let lookup = |k: &str| envs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        let key = match kt.storage() {
            KeyStorage::None => Key::plaintext(repo_id),
            KeyStorage::Repository => {
                let cfg = std::fs::read_to_string(repo.join("config")).unwrap();
                // config "key = <line>\n\t<line>..." (configparser multi-line value)
                let mut text = String::new();
                let mut in_key = false;
                for line in cfg.lines() {
                    if let Some(v) = line.strip_prefix("key = ") {
                        text.push_str(v);
                        in_key = true;
                    } else if in_key && line.starts_with(char::is_whitespace) {
                        text.push('\n');
                        text.push_str(line.trim());
                    } else {
                        in_key = false;
                    }
                }
                Key::from_repokey_string(kt, &text, &pp).unwrap()
            }
            KeyStorage::Keyfile => {
                let found = paths::find_keyfile(&lookup, &repo_id)
                    .unwrap()
                    .expect("keyfile in keys dir");
                // borg named it after the repository path
                assert_eq!(
                    found,
                    paths::keys_dir(&lookup).join(paths::key_filename(&repo_s, None))
                );
                Key::from_keyfile_str(kt, &std::fs::read_to_string(&found).unwrap(), &pp).unwrap()
            }
        };
        assert_eq!(key.repository_id(), &repo_id);
        let payload = key.decrypt(None, &menv).unwrap();
        assert_eq!(
            hex::encode(&payload),
            res["manifest_payload"].as_str().unwrap()
        );
        let plain = hex::decode(res["manifest_plain"].as_str().unwrap()).unwrap();
        let v = tam::verify_manifest(&key, &plain, false, &repo_s).unwrap();
        assert_eq!(
            v.verified,
            kt != KeyType::Plaintext
                || msgpack::map_get(&msgpack::unpack(&plain).unwrap(), "tam").is_some()
        );
        for a in res["archives"].as_array().unwrap() {
            let id: [u8; 32] = hex::decode(a["id"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let env = hex::decode(a["envelope"].as_str().unwrap()).unwrap();
            assert_eq!(
                hex::encode(key.decrypt(Some(&id), &env).unwrap()),
                a["payload"].as_str().unwrap()
            );
            let aplain = hex::decode(a["plain"].as_str().unwrap()).unwrap();
            key.assert_id(&id, &aplain).unwrap();
            // borg 1.2.4 writes archive TAMs (context "archive") though it does not check them
            let r = tam::verify_archive(&key, &aplain, false).unwrap();
            assert!(r.verified, "{kt:?} archive TAM");
            let mut bad = aplain.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(tam::verify_archive(&key, &bad, false).is_err());
        }
        if kt.is_encrypted() {
            let after = key.nonce_after_manifest(&menv).unwrap();
            let nf = paths::nonce_file(&lookup, &repo_id);
            let nm = NonceManager::new(NoRepoNonces, nf, after);
            let local = nm
                .local_free_nonce()
                .unwrap()
                .expect("borg wrote a nonce file");
            assert!(
                local >= after,
                "local nonce {local} < manifest nonce {after}"
            );
            // a new reservation starts at borg's reservation end, never below
            let mut nm = nm;
            assert_eq!(nm.next_nonce(1).unwrap(), local);
        }
    }
}
