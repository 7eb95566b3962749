//! The object store port on a real S3-compatible server (issue 17): Garage, started by the
//! test on loopback. Each case works in a folder of the bucket of its own; "the same store
//! again" is another node: the same bucket with an empty staging folder of its own, so
//! whatever a reopened store finds, it found in the bucket.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use harness::garage::Garage;
use sha2::{Digest, Sha256};
use store::objects::s3::S3Objects;
use store::objects::{read_all, ObjectStore, Placed, UploadKey};

static CASE: AtomicUsize = AtomicUsize::new(0);

fn node(garage: &Garage, prefix: &str) -> (S3Objects, tempfile::TempDir) {
    let local = tempfile::tempdir().unwrap();
    let store = S3Objects::open(&garage.folder(prefix), local.path()).unwrap();
    (store, local)
}

#[test]
fn the_object_store_port_conforms_on_s3() {
    let garage = Arc::new(Garage::start().unwrap());
    store::objects::conformance::run(|| {
        let prefix = format!("case-{}", CASE.fetch_add(1, Ordering::Relaxed));
        let (store, local) = node(&garage, &prefix);
        let garage = garage.clone();
        // Every node's staging folder lives as long as the case.
        let disks = std::sync::Mutex::new(vec![local]);
        (
            Box::new(store) as Box<dyn ObjectStore>,
            Box::new(move || {
                let (store, disk) = node(&garage, &prefix);
                disks.lock().unwrap().push(disk);
                Box::new(store) as Box<dyn ObjectStore>
            }) as Box<dyn Fn() -> Box<dyn ObjectStore>>,
        )
    });
}

#[test]
fn a_large_object_resumes_on_another_node_from_the_bucket_and_is_stored_in_parts() {
    let garage = Garage::start().unwrap();
    // 21 MiB: three parts of 8 MiB on the way up, and a partial of many 1 MiB syncs.
    let bytes: Vec<u8> = (0..21 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let id = proto::sync::ObjectId::from_digest(&Sha256::digest(&bytes).into());
    let key = UploadKey::new("jinzhou", id.clone());
    let (a, _a_disk) = node(&garage, "large");
    let (kept, mut partial) = a.open_partial(&key, 0).unwrap();
    assert_eq!(kept, 0);
    let mib = 1024 * 1024;
    for chunk in bytes[..13 * mib].chunks(mib) {
        partial.append(chunk).unwrap();
        partial.sync().unwrap();
    }
    // Half a chunk more that was never committed: node A dies here.
    partial
        .append(&bytes[13 * mib..13 * mib + mib / 2])
        .unwrap();
    drop(partial);
    drop(a);
    let (b, _b_disk) = node(&garage, "large");
    let committed = 13 * mib as u64;
    let (kept, mut partial) = b.open_partial(&key, committed).unwrap();
    assert_eq!(
        kept, committed,
        "every committed byte is found in the bucket"
    );
    partial.append(&bytes[13 * mib..]).unwrap();
    partial.sync().unwrap();
    drop(partial);
    assert_eq!(b.place(&key, None).unwrap(), Placed::Placed);
    assert_eq!(
        b.size(&id).unwrap(),
        Some(bytes.len() as u64),
        "readable once placed"
    );
    b.sync_placed(std::slice::from_ref(&id)).unwrap();
    let (c, c_disk) = node(&garage, "large");
    assert_eq!(
        read_all(&c, &id).unwrap(),
        bytes,
        "whole, from a third node"
    );
    let across = 8 * mib as u64 - 3;
    assert_eq!(
        c.read_range(&id, across, 6).unwrap(),
        &bytes[across as usize..across as usize + 6],
        "a ranged read across a part boundary"
    );
    let local = c.local_file(&id).unwrap();
    assert_eq!(std::fs::read(local.path()).unwrap(), bytes);
    drop(local);
    // Read back once, it is kept on the node's disk for the next reader.
    assert!(c_disk.path().join("cache").join(id.as_str()).is_file());
    let again = c.local_file(&id).unwrap();
    assert_eq!(std::fs::read(again.path()).unwrap(), bytes);
    assert_eq!(
        c.read_range(&id, across, 6).unwrap(),
        &bytes[across as usize..across as usize + 6]
    );
    assert!(
        c.idle_partials(std::time::Duration::ZERO)
            .unwrap()
            .is_empty(),
        "the segments are gone once the object is stored"
    );
}

#[test]
fn a_bucket_that_does_not_answer_is_named_at_start() {
    let garage = Garage::start().unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut wrong = garage.config.clone();
    wrong.secret_access_key = "0".repeat(64);
    let err = S3Objects::open(&wrong, local.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("objects"), "{err}");
    let mut absent = garage.config.clone();
    absent.bucket = "no-such-bucket".into();
    let err = S3Objects::open(&absent, local.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-such-bucket") || err.contains("objects"),
        "{err}"
    );
}
