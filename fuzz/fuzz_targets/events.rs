//! Fuzzes event intake: whatever arrives over HTTP, `parse` returns an event
//! or an error, and never panics.
//!
//! The input is a request head and body separated by the first empty line:
//! `name: value` lines (invalid ones are skipped, as an HTTP server would
//! refuse them), then the body bytes. Seeds: the files of
//! `tests/fixtures/events/` written in this form.

#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let (head, body) = split_request(input);
    let headers = parse_headers(head);
    let _ = lifeboat_shared::events::parse(&headers, body);
});

/// Splits the input at the first empty line into head and body; without
/// one, the whole input is the body.
fn split_request(input: &[u8]) -> (&[u8], &[u8]) {
    match input.windows(2).position(|pair| pair == b"\n\n") {
        Some(at) => (&input[..at], &input[at + 2..]),
        None => (&[], input),
    }
}

/// The valid `name: value` lines of the head.
fn parse_headers(head: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in head.split(|byte| *byte == b'\n') {
        let Some(colon) = line.iter().position(|byte| *byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}
