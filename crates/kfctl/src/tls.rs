//! The one rustls crypto provider for the whole process (ring), installed before any TLS.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Install ring as rustls' process-wide default crypto provider. Idempotent and cheap: call it
/// before building any TLS client (reqwest, kube). If something else already installed a provider
/// first, that one stays (rustls allows only one) and this is a no-op.
pub fn install_crypto_provider() {
    INSTALL.call_once(|| {
        // Err means a provider is already installed, which is what we want anyway.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
