//! Redis behind Sentinel: the engine finds the master through the sentinel and
//! follows a failover.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{cache, eventually};
use strata_cache::SetOptions;
use strata_testkit::RedisSentinel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_failover() {
    let mut s = RedisSentinel::start().unwrap();
    let c = cache(&s.url()).await;
    assert_eq!(c.l2_up(), Some(true));
    c.set_bytes(
        "user",
        "before",
        Bytes::from_static(b"1"),
        SetOptions::default(),
    )
    .await
    .unwrap();
    assert!(
        s.master
            .command("EXISTS strata:user:k:before")
            .unwrap()
            .starts_with(":1"),
        "write did not reach the master"
    );

    s.master.kill();
    let replica = s.replica.port();
    let promoted = eventually(Duration::from_secs(30), || async {
        s.current_master_port() == Some(replica)
    })
    .await;
    assert!(promoted, "sentinel did not promote the replica");

    // Reads keep working throughout (memory and loader while L2 is away)…
    let v = c
        .get_or_load_bytes("user", "during", || async {
            Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
        })
        .await
        .unwrap();
    assert_eq!(v, Bytes::from_static(b"x"));
    // …and writes reach the new master once the engine has re-resolved it.
    let followed = eventually(Duration::from_secs(30), || async {
        c.set_bytes(
            "user",
            "after",
            Bytes::from_static(b"2"),
            SetOptions::default(),
        )
        .await
        .unwrap();
        s.replica
            .command("EXISTS strata:user:k:after")
            .unwrap()
            .starts_with(":1")
    })
    .await;
    assert!(followed, "writes never reached the promoted replica");
    assert_eq!(c.l2_up(), Some(true));
}
