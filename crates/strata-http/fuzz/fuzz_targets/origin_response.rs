//! An origin's response bytes are untrusted: the head parser and the body decoder
//! must never panic, and must read the same response whichever pieces the bytes
//! arrive in (a response cut differently must not be taken for another).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use strata_http::h1::{parse_head, Decoder, Framing};

/// What a response decodes to: status, field count, framing, keep-alive, body,
/// and what was left unread; or where it failed.
type Outcome = Result<(u16, usize, Framing, bool, Vec<u8>, usize, bool), ()>;

fn read(data: &[u8], step: usize, head_request: bool) -> Outcome {
    let mut buf = BytesMut::new();
    let mut pieces = data.chunks(step.max(1));
    let head = loop {
        match parse_head(&mut buf, head_request) {
            Ok(Some(h)) => break h,
            Ok(None) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => return Err(()),
            },
            Err(_) => return Err(()),
        }
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Err(_) => return Err(()),
            Ok(Some(b)) => {
                assert!(!b.is_empty(), "an empty frame");
                body.extend_from_slice(&b);
            }
            Ok(None) if decoder.is_done() => break,
            Ok(None) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => {
                    if decoder.end_of_input().is_err() {
                        return Err(());
                    }
                    break;
                }
            },
        }
    }
    let left = buf.len() + pieces.map(<[u8]>::len).sum::<usize>();
    if let Framing::Length(n) = head.framing {
        assert_eq!(body.len() as u64, n, "a body of the wrong length");
    }
    Ok((
        head.status.as_u16(),
        head.headers.len(),
        head.framing,
        head.keep_alive,
        body,
        left,
        decoder.is_done(),
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let head_request = first & 0x80 != 0;
    let step = (first & 0x7f) as usize + 1;
    let whole = read(data, data.len(), head_request);
    assert_eq!(read(data, step, head_request), whole, "pieces of {step}");
    assert_eq!(read(data, 1, head_request), whole, "pieces of 1");
});
