//! End-to-end suite; the tests live in `tests/tests/`.

use chaos::proxy::{Proxies, Proxy, ProxyConfig};

/// A proxy named `name` in front of the shared throwaway cluster: the proxy set (keep it
/// alive), the proxy, and the database URL through it.
///
/// # Panics
/// When the shared cluster cannot start or the proxy cannot be made: a test cannot go on.
pub fn proxy_to_shared(name: &str) -> (Proxies, Proxy, String) {
    let db = chaos::postgres::shared().expect("shared database");
    let upstream = db.url();
    let target = upstream
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let proxies = Proxies::new(11);
    let proxy = proxies
        .create(ProxyConfig::new(name, "127.0.0.1:0", target.clone()))
        .unwrap();
    let url = upstream.replace(&target, &proxy.listen_addr().unwrap().to_string());
    (proxies, proxy, url)
}
