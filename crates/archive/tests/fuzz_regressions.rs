//! Replays the committed inputs of this crate's fuzz targets (`fuzz/`, see
//! `docs/reliability.md`): real objects of borg 1.2.4 repositories (encrypted and not) with their
//! real keys, manifests, archive metadata and item streams, and every input that once crashed a
//! target, through the target's own check (`fuzz/checks/<target>.rs`: `open_object`,
//! `Manifest::decode`, `ArchiveMeta::decode`, `ItemUnpacker`/`RobustUnpacker` plus round trips).

#[path = "../../../fuzz/checks/archive_meta.rs"]
mod archive_meta;
#[path = "../../../fuzz/checks/chunk_envelope.rs"]
mod chunk_envelope;
#[path = "../../../fuzz/checks/items.rs"]
mod items;
#[path = "../../../fuzz/checks/keys.rs"]
mod keys;
#[path = "../../../fuzz/checks/manifest.rs"]
mod manifest;
#[path = "../../../fuzz/checks/replay.rs"]
mod replay;

#[test]
fn chunk_envelope_inputs() {
    let results = replay::replay("chunk_envelope", chunk_envelope::run);
    replay::assert_seeds("chunk_envelope", &results, &[]);
}

#[test]
fn manifest_inputs() {
    let results = replay::replay("manifest", manifest::run);
    replay::assert_seeds("manifest", &results, &[]);
}

#[test]
fn archive_meta_inputs() {
    let results = replay::replay("archive_meta", archive_meta::run);
    replay::assert_seeds("archive_meta", &results, &[]);
}

#[test]
fn items_inputs() {
    let results = replay::replay("items", items::run);
    replay::assert_seeds("items", &results, &[]);
}
