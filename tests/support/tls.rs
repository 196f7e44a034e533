//! Test certificate authorities (rcgen): a CA, server certificates for 127.0.0.1 signed by
//! it, and signing keys with certificates (for token issuers).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority made for one test.
pub struct TestCa {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM (a server's or a client's).
#[derive(Clone)]
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A signing key (PKCS#8 DER) with its certificate (DER), issued by a [`TestCa`].
pub struct SigningCert {
    pub key_pkcs8: Vec<u8>,
    pub cert_der: Vec<u8>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server_cert(&self) -> ServerCert {
        self.leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "image-mirror test registry",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (TLS client authentication) for `name`.
    pub fn client_cert(&self, name: &str) -> ServerCert {
        self.leaf(Vec::new(), name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> ServerCert {
        let key = KeyPair::generate().expect("generate key");
        let mut params = CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// An ECDSA P-256 signing key and its certificate.
    pub fn signing_cert(&self, name: &str) -> SigningCert {
        let key = KeyPair::generate().expect("generate signing key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("signing params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign signing cert");
        SigningCert {
            key_pkcs8: key.serialize_der(),
            cert_der: cert.der().to_vec(),
        }
    }
}
