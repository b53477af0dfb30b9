//! The load generator's response parser reads whatever a target sends back: any
//! bytes must give a response, "need more", or an error, never a panic, and a
//! response never consumes more than it was given.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (head, keep, eof) in [(false, true, false), (false, false, true), (true, true, true)] {
        let mut buf = BytesMut::from(data);
        if let Ok(Some(r)) = strata_bench::h1::parse(&mut buf, head, keep, eof) {
            assert!(buf.len() <= data.len());
            assert!(r.body.len() <= data.len());
        }
    }
});
