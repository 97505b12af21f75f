//! Certificates made at test time, for throwaway clusters that speak TLS
//! ([`ClusterOptions::tls`](crate::postgres::ClusterOptions::tls)).
//!
//! A [`TestCa`] is a fresh certificate authority (an ECDSA P-256 key that lives only in
//! memory); it issues server certificates for the names given (`localhost`, `127.0.0.1`), and
//! its certificate is what a client's `sslrootcert` names. Two `TestCa`s never trust each
//! other's certificates: one is "the wrong CA" for the other.
//!
//! # Examples
//! ```
//! let ca = chaos::tls::TestCa::new("chaos test CA")?;
//! let server = ca.issue(&["localhost", "127.0.0.1"])?;
//! assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(server.key_pem.contains("PRIVATE KEY"));
//! # Ok::<(), rcgen::Error>(())
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority made for one test run.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new authority whose certificate's common name is `name`.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Self { issuer })
    }

    /// The authority's certificate, for a client's `sslrootcert`.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate for the database user `user` (its common name, which the
    /// server's `cert` authentication matches against the user name).
    pub fn issue_client(&self, user: &str) -> Result<Issued, rcgen::Error> {
        self.sign(Vec::new(), user)
    }

    /// A server certificate valid for `names` (host names or IP addresses), signed by this
    /// authority.
    pub fn issue(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let common = names.first().cloned().unwrap_or_default();
        self.sign(names, &common)
    }

    /// A certificate for `alt_names`, named `common_name`, signed by this authority.
    fn sign(&self, alt_names: Vec<String>, common_name: &str) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(alt_names)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
