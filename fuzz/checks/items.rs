//! Fuzz target `items`: arbitrary bytes as an archive's item stream (the decrypted, decompressed
//! item metadata chunks, concatenated), read by `rborg_archive::ItemUnpacker` fed in pieces as
//! `ItemIter` feeds it chunk by chunk, and by the `RobustUnpacker` that `check --repair` uses to
//! resync after damage. The first byte sets the piece size.
//!
//! Properties beyond "no panic": every item decoded and encoded again (`Item::encode`) decodes
//! to an item that encodes to the same bytes, and `msgpack::value_len` finds the same end (or
//! the same lack of one) as rmpv decoding.
//! Regression test: `crates/archive/tests/fuzz_regressions.rs`.

use rborg_archive::manifest::ITEM_KEYS;
use rborg_archive::robust_unpacker::RobustUnpacker;
use rborg_archive::{Item, ItemUnpacker};
use rborg_crypto::msgpack;

/// `msgpack::value_len` (how the unpackers find an item's end without decoding it) agrees
/// with rmpv decoding the same bytes.
fn check_value_len(data: &[u8]) {
    use rmpv::decode::Error as E;
    let mut rd = data;
    let want = match rmpv::decode::read_value(&mut rd) {
        Ok(_) => msgpack::ValueLen::Complete(data.len() - rd.len()),
        Err(E::DepthLimitExceeded) => msgpack::ValueLen::TooDeep,
        Err(E::InvalidMarkerRead(_) | E::InvalidDataRead(_)) => msgpack::ValueLen::Incomplete,
    };
    assert_eq!(msgpack::value_len(data), want);
}

fn check_item(item: &Item) {
    let bytes = item.encode();
    let again = Item::decode(&bytes).expect("decode an encoded item");
    assert_eq!(again.encode(), bytes);
}

/// One fuzz unit; whether the input was accepted (parsed, opened) by the loader.
pub fn run(data: &[u8]) -> bool {
    let Some((&sel, stream)) = data.split_first() else {
        return false;
    };
    let piece = usize::from(sel).max(1);
    for skip in 0..stream.len().min(4) {
        check_value_len(&stream[skip..]);
    }
    let mut unpacker = ItemUnpacker::new();
    let mut items = 0usize;
    let mut failed = false;
    'outer: for part in stream.chunks(piece) {
        unpacker.feed(part);
        loop {
            match unpacker.next_item() {
                Ok(Some(item)) => {
                    check_item(&item);
                    items += 1;
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'outer;
                }
            }
        }
    }
    let accepted = !failed && items > 0 && unpacker.finish().is_ok();

    let keys: Vec<String> = ITEM_KEYS.iter().map(|k| k.to_string()).collect();
    let mut robust = RobustUnpacker::new(
        |v| v.is_map() && msgpack::map_get(v, "path").is_some(),
        &keys,
    );
    let mut errors = 0;
    for part in stream.chunks(piece) {
        robust.feed(part);
        loop {
            match robust.next_value() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    errors += 1;
                    if errors > 1000 {
                        return accepted;
                    }
                    robust.resync();
                }
            }
        }
    }
    accepted
}
