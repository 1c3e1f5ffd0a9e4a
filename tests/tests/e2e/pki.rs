//! Key material made at test time, so no private key is ever committed: a throwaway CA with
//! server and client certificates for TLS, and EC P-256 / RSA private keys for RS256 and ES256
//! tokens, written to a folder that is removed when the test ends.

use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A folder of its own for one test's files, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        let path = std::env::temp_dir().join(format!("signins-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// Writes `contents` to `name` in this folder and returns its path.
    pub(crate) fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write test file");
        path
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its private key, PEM, with the files they were written to.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// A CA that issues server certificates for `localhost` and `127.0.0.1`, and client
/// certificates, all for one test.
pub(crate) struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub(crate) cert_pem: String,
    pub(crate) cert: PathBuf,
}

impl TestCa {
    pub(crate) fn new(dir: &TempDir, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("signins test CA {name}"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let cert_pem = issuer.pem();
        let cert = dir.write(&format!("{name}-ca.pem"), &cert_pem);
        TestCa {
            issuer,
            cert_pem,
            cert,
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub(crate) fn server(&self, dir: &TempDir, name: &str) -> Issued {
        self.issue(
            dir,
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate, for mutual TLS.
    pub(crate) fn client(&self, dir: &TempDir, name: &str) -> Issued {
        self.issue(
            dir,
            name,
            Vec::new(),
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        dir: &TempDir,
        name: &str,
        names: Vec<String>,
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> Issued {
        let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("certificate key");
        let cert_pem = params
            .signed_by(&key, &self.issuer)
            .expect("sign certificate")
            .pem();
        let key_pem = key.serialize_pem();
        Issued {
            cert: dir.write(&format!("{name}.pem"), &cert_pem),
            key: dir.write(&format!("{name}-key.pem"), &key_pem),
            cert_pem,
            key_pem,
        }
    }
}

/// A fresh EC P-256 private key, PKCS#8 PEM (signs ES256).
pub(crate) fn es256_pem() -> String {
    rcgen::KeyPair::generate()
        .expect("generate P-256 key")
        .serialize_pem()
}

/// An RSA-2048 private key, PKCS#8 PEM (signs RS256); one per test binary, since RSA key
/// generation is the slow part.
pub(crate) fn rs256_pem() -> String {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048)
            .expect("generate RSA key")
            .to_pkcs8_pem(LineEnding::LF)
            .expect("encode RSA key")
            .to_string()
    })
    .clone()
}
