//! The Toxiproxy API: scripts of requests with arbitrary bodies (see `chaos::fuzzing`).
#![no_main]

use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let api = chaos::fuzzing::ApiUnderTest::default();
        api.run_script(data).await;
    });
});
