//! The HTML report in a real browser: headless Chromium renders its charts with no
//! console errors, from a page that loads nothing from anywhere.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use strata_bench::dist::{KeyDist, KeyGen};
use strata_bench::driver::Target;
use strata_bench::report::{own_resources, Report};
use strata_bench::runner::{run, Load, Plan};
use strata_bench::stages::Stages;
use strata_bench::workload::ValueSize;

fn chromium() -> std::path::PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in ["/usr/bin", "/usr/local/bin", "/snap/bin"] {
            let p = std::path::Path::new(dir).join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("chromium not found: apt-get install chromium (scripts/test.sh does)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_renders_in_chromium_without_errors() {
    let cache = strata_cache::Cache::builder().build().await.unwrap();
    let plan = Plan {
        load: Load::Closed(Stages::constant(2.0, Duration::from_millis(2500))),
        count: None,
        warmup: Duration::from_millis(500),
        mix: "get=80,set=20".parse().unwrap(),
        keys: KeyGen::new(KeyDist::Zipfian { theta: 0.99 }, 10_000).unwrap(),
        key_prefix: "k".into(),
        value_size: ValueSize::Fixed(100),
        batch: 10,
        timeout: Duration::from_secs(1),
        max_lateness: Duration::from_secs(10),
        uses_keys: true,
        live: None,
    };
    let out = run(plan, Target::Engine(cache.raw("html").unwrap()), |_, _| {}).await;
    let report = Report::new(
        "html </script> test",
        "engine".into(),
        BTreeMap::new(),
        &out.gathered.totals,
        out.gathered.timeline,
        Duration::from_secs(2),
        own_resources(),
    );
    let page = strata_bench::html::render(&report);
    // Self-contained: nothing fetched (the SVG namespace URI is a name, not a fetch).
    assert!(!page.contains("src=") && !page.contains("href=") && !page.contains("https://"));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.html");
    std::fs::write(&file, &page).unwrap();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    // Every series drew: 1 throughput, 4 latency-over-time, 2 distribution.
    assert!(
        dom.contains("data-rendered=\"7\""),
        "charts did not render:\n{dom}"
    );
    assert_eq!(dom.matches("class=\"series\"").count(), 7);
    assert!(!dom.contains("data-errors"), "script errors:\n{dom}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains("CONSOLE")).collect();
    assert!(console.is_empty(), "console output: {console:?}");
    // The title was escaped, and the data survived a `</script>` inside it.
    assert!(dom.contains("html &lt;/script&gt; test"));
}
