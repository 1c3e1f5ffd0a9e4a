//! Key material for bearer tokens: the public keys a service verifies RS256 and ES256 tokens
//! with (a JWKS file, keys selected by `kid`), and the private key query-service signs its own
//! credential with (a PEM file). HS256 with a shared secret needs neither and lives in
//! [`super`].
//!
//! Loading fails at start-up with a sentence naming the file and what is wrong with it; no
//! message ever contains key bytes. The JWKS file is read again while the service runs
//! ([`JwksReload`]), so keys can be rotated without a restart.

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

/// Why key material could not be used. Each message names the setting or file to fix.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Neither a JWKS file nor a shared secret was given.
    #[error(
        "no token key material: set --jwt-jwks-file or AUTH_JWT_JWKS_FILE (RS256/ES256 public keys), or --jwt-secret or AUTH_JWT_SECRET (HS256, development)"
    )]
    NoVerificationKey,
    /// query-service has nothing to sign its own credential for flag-service with.
    #[error(
        "no key to sign query-service's token for flag-service: set --service-key-file or SERVICE_KEY_FILE (RS256/ES256 private key), or --jwt-secret or AUTH_JWT_SECRET (HS256)"
    )]
    NoSigningKey,
    /// A key file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The JWKS file is not JSON of the shape `{"keys": [...]}`, or one of its keys is broken.
    #[error("{path} is not a usable JWKS: {reason}")]
    BadJwks { path: PathBuf, reason: String },
    /// The JWKS file parsed, but none of its keys can verify RS256 or ES256 tokens.
    #[error(
        "{path} holds no RS256 or ES256 signing key with a 'kid' (RSA keys, and EC keys on P-256, are used)"
    )]
    NoUsableKey { path: PathBuf },
    /// The private key file is not a PEM key this service can sign RS256 or ES256 with.
    #[error(
        "{path} is not a usable RS256 or ES256 private key: expected PEM, PKCS#8 ('BEGIN PRIVATE KEY') for an EC P-256 or RSA key, or PKCS#1 ('BEGIN RSA PRIVATE KEY'); convert a 'BEGIN EC PRIVATE KEY' file with 'openssl pkcs8 -topk8 -nocrypt'"
    )]
    BadPrivateKey { path: PathBuf },
}

/// One public key of a JWKS, with the one algorithm it verifies.
#[derive(Clone)]
pub(crate) struct VerificationKey {
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
}

/// The RS256 and ES256 public keys of a JWKS document, by `kid`.
#[derive(Clone, Default)]
pub struct JwksKeys {
    keys: HashMap<String, VerificationKey>,
}

impl std::fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("JwksKeys").field("kids", &kids).finish()
    }
}

/// The JWKS a verifier checks tokens against, replaced while the service runs when the file
/// changes (an identity provider publishes its next signing key before it starts using it, and
/// withdraws an old one after), so key rotation needs no restart.
#[derive(Clone, Default)]
pub struct SharedJwks(Arc<RwLock<Arc<JwksKeys>>>);

impl SharedJwks {
    pub fn new(keys: JwksKeys) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(keys))))
    }

    /// The keys in force now; a reload does not disturb a verification under way.
    pub fn current(&self) -> Arc<JwksKeys> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn replace(&self, keys: JwksKeys) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }
}

/// Reads the JWKS file again, every `every`, into the verifier's [`SharedJwks`].
#[derive(Clone)]
pub struct JwksReload {
    pub(crate) path: PathBuf,
    pub(crate) every: Duration,
    pub(crate) keys: SharedJwks,
}

impl std::fmt::Debug for JwksReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksReload")
            .field("path", &self.path)
            .field("every", &self.every)
            .finish()
    }
}

impl JwksReload {
    /// Reads the file once. A file that cannot be read or holds no usable key leaves the keys
    /// in force as they are (a half-written file during a deploy must not lock everyone out).
    /// Returns whether the set of key ids changed.
    pub fn reload(&self) -> Result<bool, KeyError> {
        let keys = JwksKeys::load(&self.path)?;
        let changed = keys.kids() != self.keys.current().kids();
        self.keys.replace(keys);
        Ok(changed)
    }

    /// Reloads every `every` until dropped (aborted with the server).
    pub async fn run(self) {
        let mut interval = tokio::time::interval(self.every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and the file was read at start.
        interval.tick().await;
        loop {
            interval.tick().await;
            match self.reload() {
                Ok(true) => tracing::info!(
                    path = %self.path.display(),
                    kids = ?self.keys.current().kids(),
                    "JWKS reloaded with another set of keys"
                ),
                Ok(false) => {}
                Err(error) => tracing::warn!(
                    %error,
                    "cannot reload the JWKS file; the keys in force stay in force"
                ),
            }
        }
    }
}

impl JwksKeys {
    /// The key ids, sorted.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    /// Reads a JWKS file (`{"keys": [...]}`, as identity providers publish at their `jwks_uri`).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            what: "the JWKS file",
            path: path.to_owned(),
            source,
        })?;
        let keys = Self::parse(&text).map_err(|reason| KeyError::BadJwks {
            path: path.to_owned(),
            reason,
        })?;
        if keys.is_empty() {
            return Err(KeyError::NoUsableKey {
                path: path.to_owned(),
            });
        }
        Ok(keys)
    }

    /// Parses a JWKS document. Keys this service cannot use for RS256 or ES256 (encryption
    /// keys, other curves, keys without a `kid`) are skipped, so an identity provider's full
    /// key set can be given as it is; a key that claims to be usable but is malformed is an
    /// error, because silently dropping it would refuse every token it signed.
    pub fn parse(json: &str) -> Result<Self, String> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_str(json).map_err(|error| error.to_string())?;
        let mut keys = HashMap::new();
        for (index, value) in document.keys.into_iter().enumerate() {
            // Key types this library does not know would fail the whole set; skip them instead.
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                tracing::debug!(index, "JWKS key skipped: key type not supported");
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                tracing::debug!(index, "JWKS key skipped: no 'kid'");
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let Some(algorithm) = signing_algorithm(&jwk) else {
                tracing::debug!(%kid, "JWKS key skipped: neither RS256 nor ES256");
                continue;
            };
            let key = DecodingKey::from_jwk(&jwk)
                .map_err(|error| format!("key '{kid}' (keys[{index}]): {error}"))?;
            if keys
                .insert(kid.clone(), VerificationKey { algorithm, key })
                .is_some()
            {
                return Err(format!("two keys share the 'kid' '{kid}'"));
            }
        }
        Ok(Self { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }
}

/// The algorithm a JWK verifies: its `alg` when it names one, else what its key type implies
/// (identity providers such as Entra publish RSA keys without `alg`).
fn signing_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Some(Algorithm::RS256),
        (AlgorithmParameters::EllipticCurve(params), None | Some(KeyAlgorithm::ES256))
            if params.curve == EllipticCurve::P256 =>
        {
            Some(Algorithm::ES256)
        }
        _ => None,
    }
}

/// A private key for signing RS256 or ES256 tokens, with the `kid` its tokens carry.
#[derive(Clone)]
pub struct SigningKey {
    pub(crate) key: EncodingKey,
    pub(crate) algorithm: Algorithm,
    pub(crate) key_id: String,
    public: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish()
    }
}

impl SigningKey {
    /// Reads a PEM private key: EC P-256 signs ES256, RSA signs RS256. Without `key_id` the
    /// `kid` is the key's RFC 7638 thumbprint, which is also what [`SigningKey::public_jwk`]
    /// carries, so the JWKS entry and the tokens agree without anyone choosing a name.
    pub fn load(path: &Path, key_id: Option<&str>) -> Result<Self, KeyError> {
        let pem = std::fs::read(path).map_err(|source| KeyError::Read {
            what: "the private key file",
            path: path.to_owned(),
            source,
        })?;
        Self::from_pem(&pem, key_id).ok_or_else(|| KeyError::BadPrivateKey {
            path: path.to_owned(),
        })
    }

    /// As [`SigningKey::load`], from PEM bytes; `None` when they are no usable private key.
    pub fn from_pem(pem: &[u8], key_id: Option<&str>) -> Option<Self> {
        let (key, algorithm) = match EncodingKey::from_ec_pem(pem) {
            Ok(key) => (key, Algorithm::ES256),
            Err(_) => (EncodingKey::from_rsa_pem(pem).ok()?, Algorithm::RS256),
        };
        // Deriving the public half also proves the key is what it claims (a P-384 key, or an
        // RSA public key, fails here rather than at the first signature).
        let mut public = Jwk::from_encoding_key(&key, algorithm).ok()?;
        let key_id = match key_id {
            Some(kid) if !kid.is_empty() => kid.to_owned(),
            _ => public.thumbprint(ThumbprintHash::SHA256),
        };
        public.common.key_id = Some(key_id.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        let signing = Self {
            key,
            algorithm,
            key_id,
            public,
        };
        // A key that cannot sign is refused now, not on the first call to flag-service.
        let probe = jsonwebtoken::Header::new(algorithm);
        jsonwebtoken::encode(&probe, &serde_json::json!({}), &signing.key).ok()?;
        Some(signing)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key as a JWK (with `kid`, `alg` and `use`), to add to the verifier's JWKS.
    pub fn public_jwk(&self) -> Jwk {
        self.public.clone()
    }
}

/// Private keys made at test time, so no private key is ever committed.
#[cfg(test)]
pub(crate) mod test_keys {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use std::sync::OnceLock;

    /// A fresh EC P-256 key, PKCS#8 PEM (signs ES256).
    pub(crate) fn es256_pem() -> String {
        rcgen::KeyPair::generate()
            .expect("generate P-256 key")
            .serialize_pem()
    }

    /// An RSA-2048 key, PKCS#8 PEM (signs RS256); one per test binary, as RSA key
    /// generation is slow in debug builds.
    pub(crate) fn rs256_pem() -> String {
        static KEY: OnceLock<String> = OnceLock::new();
        KEY.get_or_init(|| {
            let key =
                rsa::RsaPrivateKey::new(&mut rand08::thread_rng(), 2048).expect("generate RSA key");
            key.to_pkcs8_pem(LineEnding::LF)
                .expect("encode RSA key")
                .to_string()
        })
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_with_the_algorithm_of_their_kind_and_a_thumbprint_kid() {
        let ec = SigningKey::from_pem(test_keys::es256_pem().as_bytes(), None).unwrap();
        let rsa = SigningKey::from_pem(test_keys::rs256_pem().as_bytes(), Some("rsa-1")).unwrap();

        assert_eq!(ec.algorithm(), Algorithm::ES256);
        assert_eq!(ec.key_id().len(), 43, "base64url SHA-256 thumbprint");
        assert_eq!(rsa.algorithm(), Algorithm::RS256);
        assert_eq!(rsa.key_id(), "rsa-1");
        let jwks = serde_json::json!({ "keys": [ec.public_jwk(), rsa.public_jwk()] });
        let keys = JwksKeys::parse(&jwks.to_string()).unwrap();
        assert_eq!(keys.get(ec.key_id()).unwrap().algorithm, Algorithm::ES256);
        assert_eq!(keys.get("rsa-1").unwrap().algorithm, Algorithm::RS256);
    }

    #[test]
    fn keys_without_kid_or_of_other_kinds_are_skipped_and_usable_ones_kept() {
        let json = r#"{"keys":[
            {"kty":"RSA","kid":"rsa-1","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
            {"kty":"RSA","use":"sig","n":"sXch","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"sXch","e":"AQAB"},
            {"kty":"oct","kid":"shared","k":"c2VjcmV0"},
            {"kty":"XYZ","kid":"future"}
        ]}"#;

        let keys = JwksKeys::parse(json).unwrap();

        assert_eq!(keys.len(), 1);
        assert_eq!(keys.get("rsa-1").unwrap().algorithm, Algorithm::RS256);
    }

    #[test]
    fn a_document_without_keys_is_refused_with_the_reason() {
        let refused = JwksKeys::parse(r#"{"nokeys":[]}"#).unwrap_err();
        assert!(refused.contains("keys"), "{refused}");
    }

    #[test]
    fn two_keys_with_one_kid_are_refused() {
        let key = r#"{"kty":"EC","kid":"same","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
        let refused = JwksKeys::parse(&format!(r#"{{"keys":[{key},{key}]}}"#)).unwrap_err();
        assert!(refused.contains("same"), "{refused}");
    }

    #[test]
    fn text_that_is_no_private_key_is_refused() {
        assert!(
            SigningKey::from_pem(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                None
            )
            .is_none()
        );
        assert!(SigningKey::from_pem(b"not pem", Some("kid")).is_none());
    }
}
