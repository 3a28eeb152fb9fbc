//! Detection and every driver over arbitrary bytes: any input must be read
//! or refused with an error, never panic, and never loop.
//!
//!     cargo +nightly fuzz run alerts

#![no_main]

use herald::alerts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The webhook refuses non-UTF-8 before any driver sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Every alert read has an identity: dedup depends on it.
    let detected = alerts::scan_text(text, None, |a| {
        assert!(!a.fingerprint.trim().is_empty(), "empty fingerprint: {a:?}");
    });
    if let Ok((driver, n)) = &detected {
        assert!(alerts::DRIVERS.contains(&driver.as_str()));
        // Reading again as the detected driver gives the same count.
        let again = alerts::scan_text(text, Some(driver), |_| {}).map(|(_, m)| m);
        assert_eq!(again.ok(), Some(*n), "{driver}");
    }
    for driver in alerts::DRIVERS {
        let _ = alerts::scan_text(text, Some(driver), |_| {});
    }
});
