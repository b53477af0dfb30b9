//! Stored responses come back from Redis, which another process can write: any
//! bytes must decode to an entry or an error, and an entry must re-encode to bytes
//! that decode to the same entry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_http::entry::Entry;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entry::decode(bytes::Bytes::copy_from_slice(data)) {
        let again = Entry::decode(e.encode()).expect("re-encoded entry decodes");
        assert_eq!(again.status, e.status);
        assert_eq!(again.headers, e.headers);
        assert_eq!(again.bodies, e.bodies);
        assert_eq!(again.timing, e.timing);
    }
});
