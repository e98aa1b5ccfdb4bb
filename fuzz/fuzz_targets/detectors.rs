//! Fuzzes the readers of the detectors beyond personal numbers: each
//! built-in scanner (ranges in bounds, in order, never empty) and a
//! processor with all of them on plus a custom pattern and pseudonyms,
//! which must never panic and must return a decodable batch or an error.
#![no_main]

use std::sync::OnceLock;

use tracescrub_processor::Processor;
use tracescrub_processor::detect::Builtin;

fn processor() -> &'static Processor {
    static P: OnceLock<Processor> = OnceLock::new();
    P.get_or_init(|| {
        let key = "ab".repeat(32);
        let cfg = format!(
            r#"{{"mask": {{"replacement": "hmac", "hmac": {{"key_id": "fz", "key_hex": "{key}"}},
                "detectors": ["account-number", "payment-card", "phone-no", "email", "bearer-token"],
                "patterns": [{{"name": "word", "regex": "[a-z]+[0-9]{{2,}}", "replacement": "stars"}}]}}}}"#
        );
        Processor::new(&cfg).expect("the fuzz config is valid")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for b in Builtin::ALL {
        let mut last = 0;
        b.scan(data, &mut |s, e| {
            assert!(s < e && e <= data.len(), "{}: {s}..{e} of {}", b.name(), data.len());
            assert!(s >= last, "{}: out of order", b.name());
            last = e;
        });
    }
    // As a batch: any outcome but a panic.
    let _ = processor().process(data);
});
