//! Config validation on arbitrary text: any input is either a `Config` or a list of
//! problems, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // TLS settings make validation read the files they name; keep the fuzzer away from
    // device and kernel files (`/dev/zero` never ends, `/dev/stdin` blocks).
    if ["dev/", "proc/", "sys/", "fd/"]
        .iter()
        .any(|d| text.contains(d))
    {
        return;
    }
    match Config::from_toml(text, "fuzz.toml", std::path::Path::new("fuzz/corpus")) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
