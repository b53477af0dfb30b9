//! Arbitrary bytes as a client's or a server's stream: the startup parser, the frame
//! scanner (fed in chunks whose sizes come from the input), the session tracker and
//! the literal masker must never panic, and the scanner must account for every byte it is given.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use strata_pg::fingerprint::shape;
use strata_pg::protocol::{parse_startup, startup_len, Scanner, Seen};
use strata_pg::tracker::Tracker;

fuzz_target!(|data: &[u8]| {
    // The literal masker sees every query text.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = shape(text);
    }
    if data.len() >= 4 {
        if let Ok(len) = startup_len([data[0], data[1], data[2], data[3]]) {
            let _ = parse_startup(&data[..len.min(data.len())]);
        }
        let _ = parse_startup(data);
    }
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split % 64) + 1;
    let mut tracker = Tracker::new(1, true);
    let now = Instant::now();
    for backend in [false, true] {
        let mut scanner = if backend {
            Scanner::backend()
        } else {
            Scanner::frontend()
        }
        .with_inspect_limit(600);
        let mut pending: Vec<u8> = Vec::new();
        let mut forwarded = 0usize;
        for c in rest.chunks(chunk) {
            pending.extend_from_slice(c);
            let r = scanner.scan(&pending, |seen| {
                if let Seen::Message { tag, body, complete } = seen {
                    if backend {
                        let _ = tracker.server_message(tag, body, now);
                    } else {
                        tracker.client_message(tag, body, complete, now);
                    }
                }
            });
            match r {
                Ok(n) => {
                    assert!(n <= pending.len());
                    forwarded += n;
                    pending.drain(..n);
                }
                Err(_) => break,
            }
        }
        assert!(forwarded <= rest.len());
    }
});
