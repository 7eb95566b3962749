//! The object store's conformance suite: every adapter runs it from its own tests (files and
//! memory here; the remote adapters of later work run the same function against their real
//! servers). Each case takes a fresh, empty store, and a way to open that same store again as
//! a restarted daemon would.

// A test suite compiled into the library so that every adapter's crate can run it: a failed
// step panics, as in any test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use proto::sync::ObjectId;
use sha2::{Digest, Sha256};

use super::{read_all, ObjectError, ObjectStore, Placed, UploadKey};

/// A fresh store, and a function that opens the same store again.
pub type Subject = (Box<dyn ObjectStore>, Box<dyn Fn() -> Box<dyn ObjectStore>>);

fn id_of(bytes: &[u8]) -> ObjectId {
    ObjectId::from_digest(&Sha256::digest(bytes).into())
}

/// Runs every case, each on a store from `fresh`; panics with the case's name on a failure.
pub fn run(mut fresh: impl FnMut() -> Subject) {
    let cases: [crate::conformance::Case<Subject>; 11] = [
        ("an upload in two parts is placed and read back", two_parts),
        (
            "the last bytes need no sync before they are placed",
            last_bytes_unsynced,
        ),
        (
            "reopening keeps exactly the committed bytes",
            trims_to_committed,
        ),
        (
            "a mismatch stores nothing and removes the partial",
            mismatch,
        ),
        (
            "the hash computed on arrival is what is checked",
            hashed_on_arrival,
        ),
        ("stored bytes are never replaced", never_replaced),
        ("partials of two scopes stay apart", scopes_apart),
        ("put stores durably under the content's hash", put),
        ("a staged object is stored only when put", staged),
        ("a missing object is named as missing", missing),
        ("idle partials are listed and discarded", idle),
    ];
    crate::conformance::run("object store", &cases, &mut fresh);
}

fn upload(store: &dyn ObjectStore, key: &UploadKey, committed: u64, bytes: &[u8]) -> u64 {
    let (kept, mut partial) = store.open_partial(key, committed).unwrap();
    partial.append(bytes).unwrap();
    partial.sync().unwrap();
    assert_eq!(partial.len(), kept + bytes.len() as u64);
    kept
}

fn two_parts((store, reopen): Subject) {
    let bytes = b"hello, township".as_slice();
    let key = UploadKey::new("jinzhou", id_of(bytes));
    assert_eq!(upload(&*store, &key, 0, &bytes[..6]), 0);
    drop(store);
    let store = reopen();
    assert_eq!(
        upload(&*store, &key, 6, &bytes[6..]),
        6,
        "resumed at the commit"
    );
    assert_eq!(store.place(&key, None).unwrap(), Placed::Placed);
    store.sync_placed(std::slice::from_ref(&key.id)).unwrap();
    assert!(store.contains(&key.id).unwrap());
    assert_eq!(store.size(&key.id).unwrap(), Some(bytes.len() as u64));
    assert_eq!(store.read_range(&key.id, 7, 8).unwrap(), b"township");
    assert_eq!(store.read_range(&key.id, 7, 100).unwrap(), b"township");
    assert_eq!(store.read_range(&key.id, 15, 1).unwrap(), b"");
    assert!(matches!(
        store.read_range(&key.id, 16, 1),
        Err(ObjectError::Range { .. })
    ));
    let local = store.local_file(&key.id).unwrap();
    assert_eq!(std::fs::read(local.path()).unwrap(), bytes);
    drop(store);
    let store = reopen();
    assert_eq!(
        read_all(&*store, &key.id).unwrap(),
        bytes,
        "durable after a restart"
    );
    // The partial was consumed: a new upload of the same key starts empty.
    let (kept, _) = store.open_partial(&key, u64::MAX).unwrap();
    assert_eq!(kept, 0);
}

fn last_bytes_unsynced((store, reopen): Subject) {
    let bytes = b"synced, then the last chunk as it arrived".as_slice();
    let key = UploadKey::new("jinzhou", id_of(bytes));
    let (_, mut partial) = store.open_partial(&key, 0).unwrap();
    partial.append(&bytes[..8]).unwrap();
    partial.sync().unwrap();
    partial.append(&bytes[8..]).unwrap();
    drop(partial);
    assert_eq!(store.place(&key, None).unwrap(), Placed::Placed);
    store.sync_placed(std::slice::from_ref(&key.id)).unwrap();
    drop(store);
    let store = reopen();
    assert_eq!(
        read_all(&*store, &key.id).unwrap(),
        bytes,
        "whole after a restart"
    );
    assert!(
        store.idle_partials(Duration::ZERO).unwrap().is_empty(),
        "nothing of the partial is left"
    );
}

fn trims_to_committed((store, reopen): Subject) {
    let bytes = b"0123456789abcdef".as_slice();
    let key = UploadKey::new("jinzhou", id_of(bytes));
    upload(&*store, &key, 0, &bytes[..10]);
    drop(store);
    let store = reopen();
    // Only 4 bytes were acknowledged: the rest is dropped and sent again.
    assert_eq!(upload(&*store, &key, 4, &bytes[4..]), 4);
    // An offset past what is there keeps what is there.
    drop(store);
    let store = reopen();
    let (kept, _) = store.open_partial(&key, 1000).unwrap();
    assert_eq!(kept, bytes.len() as u64);
    assert_eq!(store.place(&key, None).unwrap(), Placed::Placed);
    assert_eq!(read_all(&*store, &key.id).unwrap(), bytes);
}

fn mismatch((store, _): Subject) {
    let claimed = id_of(b"what the clinic said");
    let key = UploadKey::new("jinzhou", claimed.clone());
    upload(&*store, &key, 0, b"what arrived");
    assert_eq!(
        store.place(&key, None).unwrap(),
        Placed::Mismatch {
            actual: id_of(b"what arrived")
        }
    );
    assert!(!store.contains(&claimed).unwrap());
    assert!(!store.contains(&id_of(b"what arrived")).unwrap());
    let (kept, _) = store.open_partial(&key, u64::MAX).unwrap();
    assert_eq!(kept, 0, "the partial was removed");
}

fn hashed_on_arrival((store, _): Subject) {
    let bytes = b"bytes as they arrived".as_slice();
    let key = UploadKey::new("jinzhou", id_of(bytes));
    upload(&*store, &key, 0, bytes);
    let other = id_of(b"something else");
    assert_eq!(
        store.place(&key, Some(other.clone())).unwrap(),
        Placed::Mismatch { actual: other }
    );
    upload(&*store, &key, 0, bytes);
    assert_eq!(
        store.place(&key, Some(key.id.clone())).unwrap(),
        Placed::Placed
    );
    assert_eq!(read_all(&*store, &key.id).unwrap(), bytes);
}

fn never_replaced((store, _): Subject) {
    let bytes = b"the first copy".as_slice();
    let id = store.put(&mut &bytes[..]).unwrap();
    assert_eq!(id, id_of(bytes));
    let key = UploadKey::new("pulandian", id.clone());
    upload(&*store, &key, 0, bytes);
    assert_eq!(store.place(&key, None).unwrap(), Placed::Placed);
    store.sync_placed(std::slice::from_ref(&id)).unwrap();
    assert_eq!(read_all(&*store, &id).unwrap(), bytes);
    assert!(store.place(&key, None).is_err(), "the partial is gone");
}

fn scopes_apart((store, _): Subject) {
    let bytes = b"same object, two clinics".as_slice();
    let (a, b) = (
        UploadKey::new("jinzhou", id_of(bytes)),
        UploadKey::new("pulandian", id_of(bytes)),
    );
    upload(&*store, &a, 0, &bytes[..5]);
    upload(&*store, &b, 0, &bytes[..9]);
    let (kept_a, _) = store.open_partial(&a, u64::MAX).unwrap();
    let (kept_b, _) = store.open_partial(&b, u64::MAX).unwrap();
    assert_eq!((kept_a, kept_b), (5, 9));
    store.discard_partial(&a).unwrap();
    let (kept_b, _) = store.open_partial(&b, u64::MAX).unwrap();
    assert_eq!(
        kept_b, 9,
        "discarding one scope's partial keeps the other's"
    );
}

fn put((store, reopen): Subject) {
    let bytes = vec![7u8; 300_000];
    let id = store.put(&mut bytes.as_slice()).unwrap();
    assert_eq!(id, id_of(&bytes));
    assert_eq!(store.put(&mut bytes.as_slice()).unwrap(), id, "idempotent");
    drop(store);
    let store = reopen();
    assert_eq!(store.size(&id).unwrap(), Some(300_000));
    assert_eq!(store.read_range(&id, 299_998, 10).unwrap(), [7u8, 7]);
}

fn staged((store, reopen): Subject) {
    let bytes = b"a DICOM file, checked before it is kept".to_vec();
    let mut kept = store.stage().unwrap();
    kept.write(&bytes).unwrap();
    assert_eq!(
        std::fs::read(kept.path()).unwrap(),
        bytes,
        "readable while staged"
    );
    assert_eq!(kept.id(), id_of(&bytes));
    assert!(!store.contains(&id_of(&bytes)).unwrap(), "not stored yet");
    let mut dropped = store.stage().unwrap();
    dropped.write(b"a file sent to quarantine").unwrap();
    let (dropped_id, dropped_path) = (dropped.id(), dropped.path().to_path_buf());
    drop(dropped);
    assert!(!dropped_path.exists(), "a dropped stage leaves no file");
    assert_eq!(store.put_staged(kept).unwrap(), id_of(&bytes));
    drop(store);
    let store = reopen();
    assert_eq!(store.read_range(&id_of(&bytes), 0, 1_000).unwrap(), bytes);
    assert!(!store.contains(&dropped_id).unwrap());
}

fn missing((store, _): Subject) {
    let id = id_of(b"never stored");
    assert!(!store.contains(&id).unwrap());
    assert_eq!(store.size(&id).unwrap(), None);
    assert!(matches!(
        store.read_range(&id, 0, 1),
        Err(ObjectError::Missing(m)) if m == id
    ));
    assert!(matches!(
        store.local_file(&id),
        Err(ObjectError::Missing(_))
    ));
    let key = UploadKey::new("jinzhou", id);
    assert!(matches!(
        store.place(&key, None),
        Err(ObjectError::NoPartial(_))
    ));
    store.discard_partial(&key).unwrap();
}

fn idle((store, _): Subject) {
    let key = UploadKey::new("jinzhou", id_of(b"abandoned"));
    upload(&*store, &key, 0, b"aband");
    assert!(store
        .idle_partials(Duration::from_secs(3600))
        .unwrap()
        .is_empty());
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        store.idle_partials(Duration::from_millis(10)).unwrap(),
        vec![key.clone()]
    );
    store.discard_partial(&key).unwrap();
    assert!(store.idle_partials(Duration::ZERO).unwrap().is_empty());
}
