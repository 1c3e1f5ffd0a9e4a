//! Who is calling, and may they call this RPC.
//!
//! Every RPC but health and reflection needs `authorization: Bearer <JWT>`. [`AuthLayer`] is
//! the one place that verifies the token and checks the caller's roles against the service's
//! access table ([`AccessRule`] per gRPC method path); handlers receive a verified
//! [`Principal`] in the request extensions and only apply tenant scoping from it.
//!
//! Tokens are verified with RS256 or ES256 public keys from a JWKS file (production, key
//! chosen by the token's `kid`), with an HS256 shared secret (development), or with both.
//! [`keys`] loads the key material; [`AuthArgs`] is how both services are told where it is.

mod keys;

pub use keys::{JwksKeys, JwksReload, KeyError, SharedJwks, SigningKey};

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use uuid::Uuid;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 60;

/// The roles this system knows. Any other role string in a token is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    GlobalAdministrator,
    GlobalReader,
    ReportsReader,
    SecurityAdministrator,
    SecurityOperator,
    SecurityReader,
    /// The application permission `AuditLog.Read.All`.
    AuditLogReadAll,
    /// Reads only flagged sign-ins of its tenant.
    HelpdeskAdministrator,
    /// The gateway: RecordSignIns, StreamSignIns.
    SignInLogsWrite,
    /// The gateway: EnableFlagging, DisableFlagging, GetFlagStatus.
    FlaggingWrite,
    /// query-service: CheckFlags.
    FlaggingCheck,
}

impl Role {
    pub const ALL: [Role; 11] = [
        Role::GlobalAdministrator,
        Role::GlobalReader,
        Role::ReportsReader,
        Role::SecurityAdministrator,
        Role::SecurityOperator,
        Role::SecurityReader,
        Role::AuditLogReadAll,
        Role::HelpdeskAdministrator,
        Role::SignInLogsWrite,
        Role::FlaggingWrite,
        Role::FlaggingCheck,
    ];

    /// The roles that may read a whole tenant's sign-in log.
    pub const READERS: &'static [Role] = &[
        Role::GlobalAdministrator,
        Role::GlobalReader,
        Role::ReportsReader,
        Role::SecurityAdministrator,
        Role::SecurityOperator,
        Role::SecurityReader,
        Role::AuditLogReadAll,
    ];

    /// The reader roles and help desk: who may read a tenant's sign-ins (help desk only the
    /// flagged ones) and list its flag sessions.
    pub const READERS_AND_HELPDESK: &'static [Role] = &[
        Role::GlobalAdministrator,
        Role::GlobalReader,
        Role::ReportsReader,
        Role::SecurityAdministrator,
        Role::SecurityOperator,
        Role::SecurityReader,
        Role::AuditLogReadAll,
        Role::HelpdeskAdministrator,
    ];

    /// The name used in tokens.
    pub fn claim(self) -> &'static str {
        match self {
            Role::GlobalAdministrator => "GlobalAdministrator",
            Role::GlobalReader => "GlobalReader",
            Role::ReportsReader => "ReportsReader",
            Role::SecurityAdministrator => "SecurityAdministrator",
            Role::SecurityOperator => "SecurityOperator",
            Role::SecurityReader => "SecurityReader",
            Role::AuditLogReadAll => "AuditLog.Read.All",
            Role::HelpdeskAdministrator => "HelpdeskAdministrator",
            Role::SignInLogsWrite => "SignInLogs.Write",
            Role::FlaggingWrite => "Flagging.Write",
            Role::FlaggingCheck => "Flagging.Check",
        }
    }

    pub fn from_claim(claim: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.claim() == claim)
    }

    pub fn is_reader(self) -> bool {
        Role::READERS.contains(&self)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.claim())
    }
}

/// The claims we read from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Tenant id; absent for platform service identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub`: a user's object id, or a service's name.
    pub subject: String,
    /// The token's `tid`, when it names a tenant.
    pub tenant_id: Option<Uuid>,
    pub roles: BTreeSet<Role>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|role| self.roles.contains(role))
    }

    /// A signed-in user holding none of the roles this system knows.
    pub fn is_plain_user(&self) -> bool {
        self.roles.is_empty()
    }

    /// The principal recorded in audit fields: subject, and tenant when there is one.
    pub fn audit_name(&self) -> String {
        match self.tenant_id {
            Some(tenant) => format!("{}@{}", self.subject, tenant),
            None => self.subject.clone(),
        }
    }
}

/// Why a token was refused. Messages never echo the token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send 'authorization: Bearer <JWT>'")]
    Missing,
    #[error("malformed authorization header: expected 'Bearer <JWT>'")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid (nbf)")]
    NotYetValid,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token audience is wrong: expected '{0}'")]
    WrongAudience(String),
    #[error("token issuer is wrong: expected '{0}'")]
    WrongIssuer(String),
    /// The header's `alg` is one this service does not take (or has no key for).
    #[error("token algorithm {0} is not accepted here: {1}")]
    AlgorithmNotAccepted(String, &'static str),
    /// An RS256/ES256 token without a `kid`: the key cannot be chosen.
    #[error("token header has no 'kid': RS256 and ES256 tokens must name their key")]
    MissingKeyId,
    /// The `kid` names no key of the JWKS, or a key of another algorithm.
    #[error("token 'kid' names no {0} key this service knows")]
    UnknownKey(&'static str),
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token 'tid' is not a GUID")]
    BadTenant,
}

/// Verifies bearer tokens, checking the signature, `iss`, `aud`, `exp` and `nbf` (with
/// [`LEEWAY_SECONDS`]) and requiring `sub`.
#[derive(Clone)]
pub struct TokenVerifier {
    /// HS256 tokens are accepted only when a secret was configured.
    secret: Option<DecodingKey>,
    /// RS256 and ES256 tokens are accepted only with a `kid` found here.
    jwks: SharedJwks,
    /// Where and how often the JWKS is read again, when it came from a file.
    reload: Option<JwksReload>,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks", &self.jwks.current())
            .field("reload", &self.reload)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    /// Accepts HS256 tokens signed with `secret` (development).
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            secret: Some(DecodingKey::from_secret(secret.as_bytes())),
            jwks: SharedJwks::default(),
            reload: None,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Accepts RS256 and ES256 tokens signed by a key of `jwks` (production).
    pub fn jwks(jwks: JwksKeys, issuer: &str, audience: &str) -> Self {
        Self {
            secret: None,
            jwks: SharedJwks::new(jwks),
            reload: None,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Reads `path` again every `every` and verifies with what it holds from then on.
    pub fn reloading_from(mut self, path: &Path, every: Duration) -> Self {
        self.reload = Some(JwksReload {
            path: path.to_owned(),
            every,
            keys: self.jwks.clone(),
        });
        self
    }

    /// The reload of the JWKS file, when there is one to run.
    pub fn jwks_reload(&self) -> Option<JwksReload> {
        self.reload.clone()
    }

    /// Also accepts HS256 tokens signed with `secret`.
    pub fn and_hs256(mut self, secret: &str) -> Self {
        self.secret = Some(DecodingKey::from_secret(secret.as_bytes()));
        self
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation
    }

    /// The key for a token, chosen by its header, from the secret or `jwks` (the keys in force
    /// for this verification). The algorithm comes from our key, never from the token alone, so
    /// an RS256 public key can never be used as an HS256 secret.
    fn key_for<'a>(
        &'a self,
        jwks: &'a JwksKeys,
        token: &str,
    ) -> Result<(&'a DecodingKey, Algorithm), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("not a valid JWT".into()))?;
        match header.alg {
            Algorithm::HS256 => match &self.secret {
                Some(secret) => Ok((secret, Algorithm::HS256)),
                None => Err(AuthError::AlgorithmNotAccepted(
                    "HS256".into(),
                    "this service verifies RS256 and ES256 tokens from its JWKS",
                )),
            },
            Algorithm::RS256 | Algorithm::ES256 => {
                let name = if header.alg == Algorithm::RS256 {
                    "RS256"
                } else {
                    "ES256"
                };
                if jwks.is_empty() {
                    return Err(AuthError::AlgorithmNotAccepted(
                        name.into(),
                        "this service has no JWKS and verifies HS256 tokens only",
                    ));
                }
                let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
                match jwks.get(kid) {
                    Some(key) if key.algorithm == header.alg => Ok((&key.key, header.alg)),
                    _ => Err(AuthError::UnknownKey(name)),
                }
            }
            other => Err(AuthError::AlgorithmNotAccepted(
                format!("{other:?}"),
                "use RS256 or ES256 (or HS256 in development)",
            )),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let jwks = self.jwks.current();
        let (key, algorithm) = self.key_for(&jwks, token)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation(algorithm))
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::WrongAudience(self.audience.clone()),
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer(self.issuer.clone()),
                ErrorKind::MissingRequiredClaim(claim) => {
                    AuthError::Invalid(format!("missing claim '{claim}'"))
                }
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
                _ => AuthError::Invalid("not a valid JWT".into()),
            })?;
        let claims = data.claims;
        let tenant_id = match claims.tid.as_deref() {
            None | Some("") => None,
            Some(tid) => Some(Uuid::parse_str(tid).map_err(|_| AuthError::BadTenant)?),
        };
        Ok(Principal {
            subject: claims.sub,
            tenant_id,
            roles: claims
                .roles
                .iter()
                .filter_map(|role| Role::from_claim(role))
                .collect(),
        })
    }
}

/// Signs tokens: query-service's own credential towards flag-service (HS256 with the shared
/// secret, or RS256/ES256 with its private key), and development tokens printed by
/// `signins-token` and the run script.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
    algorithm: Algorithm,
    /// The `kid` header, for tokens verified against a JWKS.
    key_id: Option<String>,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenMinter {
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            algorithm: Algorithm::HS256,
            key_id: None,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    /// Signs with a private key (RS256 or ES256, by the key), naming it by its `kid`.
    pub fn with_key(key: &SigningKey, issuer: &str, audience: &str) -> Self {
        Self {
            key: key.key.clone(),
            algorithm: key.algorithm,
            key_id: Some(key.key_id.clone()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn mint(
        &self,
        subject: &str,
        tenant_id: Option<Uuid>,
        roles: &[Role],
        ttl: Duration,
    ) -> Result<String, AuthError> {
        self.mint_claims(
            subject,
            tenant_id.map(|tenant| tenant.to_string()),
            roles.iter().map(|role| role.claim().to_owned()).collect(),
            ttl,
        )
    }

    /// Signs arbitrary role strings, for tests and tools that need tokens the system would not issue.
    pub fn mint_claims(
        &self,
        subject: &str,
        tid: Option<String>,
        roles: Vec<String>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let mut claims = self.claims(subject, ttl);
        claims.tid = tid;
        claims.roles = roles;
        self.sign(&claims)
    }

    /// Claims with this minter's `iss` and `aud`, valid from now for `ttl`, without tenant or
    /// roles; tests edit them (an `exp` in the past, another `aud`) and [`TokenMinter::sign`].
    pub fn claims(&self, subject: &str, ttl: Duration) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_owned(),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            nbf: Some(now),
            iat: Some(now),
            tid: None,
            roles: Vec::new(),
        }
    }

    /// Signs the claims as they are.
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|error| AuthError::Invalid(format!("could not sign token: {error}")))
    }
}

/// A service credential that is re-minted before it expires: query-service presents it to
/// flag-service on every call.
#[derive(Debug, Clone)]
pub struct ServiceCredential {
    minter: TokenMinter,
    subject: String,
    roles: Vec<Role>,
    ttl: Duration,
    cached: Arc<Mutex<Option<(String, i64)>>>,
}

impl ServiceCredential {
    pub fn new(minter: TokenMinter, subject: &str, roles: Vec<Role>, ttl: Duration) -> Self {
        Self {
            minter,
            subject: subject.to_owned(),
            roles,
            ttl,
            cached: Arc::new(Mutex::new(None)),
        }
    }

    /// The current token, re-minted once less than a third of its lifetime remains.
    pub fn bearer(&self) -> Result<String, AuthError> {
        let now = Utc::now().timestamp();
        let renew_margin = i64::try_from(self.ttl.as_secs() / 3).unwrap_or(0);
        let mut cached = self
            .cached
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((token, expires)) = cached.as_ref() {
            if *expires - now > renew_margin {
                return Ok(format!("Bearer {token}"));
            }
        }
        let token = self
            .minter
            .mint(&self.subject, None, &self.roles, self.ttl)?;
        let expires = now + i64::try_from(self.ttl.as_secs()).unwrap_or(0);
        *cached = Some((token.clone(), expires));
        Ok(format!("Bearer {token}"))
    }
}

/// Who may call one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessRule {
    /// Any verified caller; the handler narrows what it sees (e.g. a user sees their own).
    AnySignedIn,
    /// Callers holding at least one of these roles.
    AnyOf(&'static [Role]),
    /// Callers holding one of these roles, or plain users (a token with none of the roles
    /// this system knows); the handler narrows a plain user to their own data.
    AnyOfOrPlainUser(&'static [Role]),
}

impl AccessRule {
    pub fn allows(self, principal: &Principal) -> bool {
        match self {
            AccessRule::AnySignedIn => true,
            AccessRule::AnyOf(roles) => principal.has_any(roles),
            AccessRule::AnyOfOrPlainUser(roles) => {
                principal.has_any(roles) || principal.is_plain_user()
            }
        }
    }
}

/// The access table of one service: gRPC method path → rule.
pub type AccessTable = &'static [(&'static str, AccessRule)];

/// Renders access tables as the markdown table `docs/security.md` shows: one row per RPC, the
/// roles that may call it, and whether a plain user (no role this system knows) may. A test
/// compares the docs with this rendering of both services' tables, so they cannot drift.
pub fn access_table_markdown(tables: &[AccessTable]) -> String {
    let mut text = String::from("| RPC | roles allowed | plain user |\n|---|---|---|\n");
    for (path, rule) in tables.iter().flat_map(|table| table.iter()) {
        let (roles, plain_user) = match rule {
            AccessRule::AnySignedIn => ("any".to_owned(), "yes"),
            AccessRule::AnyOf(roles) => (role_list(roles), "no"),
            AccessRule::AnyOfOrPlainUser(roles) => (role_list(roles), "yes"),
        };
        let rpc = path.trim_start_matches('/');
        text.push_str(&format!("| `{rpc}` | {roles} | {plain_user} |\n"));
    }
    text
}

fn role_list(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| format!("`{}`", role.claim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Paths served without a token: health checks and server reflection.
pub fn is_public_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Verifies the bearer token and applies the access table before any handler runs.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<TokenVerifier>,
    table: Arc<HashMap<&'static str, AccessRule>>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("rules", &self.table.len())
            .finish()
    }
}

impl AuthLayer {
    pub fn new(verifier: TokenVerifier, table: AccessTable) -> Self {
        Self {
            verifier: Arc::new(verifier),
            table: Arc::new(table.iter().copied().collect()),
        }
    }

    /// The JWKS reload the server runs beside it, if the keys came from a file.
    pub fn jwks_reload(&self) -> Option<JwksReload> {
        self.verifier.jwks_reload()
    }

    /// Decides a request from its path and `authorization` value: the principal to hand to
    /// the handler, `None` for public paths, or the status to answer with.
    pub fn authorize(
        &self,
        path: &str,
        authorization: Option<&str>,
    ) -> Result<Option<Principal>, tonic::Status> {
        if is_public_path(path) {
            return Ok(None);
        }
        // Deny by default: a method missing from the table is never served unauthenticated.
        let Some(rule) = self.table.get(path) else {
            return Err(tonic::Status::unimplemented(format!(
                "unknown method {path}"
            )));
        };
        let header = authorization
            .ok_or(AuthError::Missing)
            .map_err(unauthenticated)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(AuthError::Malformed)
            .map_err(unauthenticated)?;
        let principal = self.verifier.verify(token).map_err(unauthenticated)?;
        if !rule.allows(&principal) {
            let needed = match rule {
                AccessRule::AnyOf(roles) | AccessRule::AnyOfOrPlainUser(roles) => roles
                    .iter()
                    .map(|role| role.claim())
                    .collect::<Vec<_>>()
                    .join(", "),
                AccessRule::AnySignedIn => String::new(),
            };
            return Err(tonic::Status::permission_denied(format!(
                "missing role: this method needs one of {needed}"
            )));
        }
        Ok(Some(principal))
    }
}

fn unauthenticated(error: AuthError) -> tonic::Status {
    tonic::Status::unauthenticated(error.to_string())
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service [`AuthLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    layer: AuthLayer,
    inner: S,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for AuthService<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|value| value.to_str().map_err(|_| ()));
        let decision = match authorization {
            Some(Err(())) => Err(unauthenticated(AuthError::Malformed)),
            Some(Ok(value)) => self.layer.authorize(request.uri().path(), Some(value)),
            None => self.layer.authorize(request.uri().path(), None),
        };
        match decision {
            Ok(principal) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                // Take the service that was polled ready, leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(status) => {
                tracing::debug!(path = request.uri().path(), code = ?status.code(), "request refused by auth");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// The verified caller of a request that passed [`AuthLayer`].
pub fn principal<T>(request: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| tonic::Status::unauthenticated(AuthError::Missing.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test-secret";

    fn minter() -> TokenMinter {
        TokenMinter::hs256(SECRET, "signins", "signins")
    }

    #[test]
    fn a_minted_token_verifies_with_its_roles_and_tenant() {
        let tenant = Uuid::new_v4();
        let token = minter()
            .mint(
                "admin",
                Some(tenant),
                &[Role::GlobalReader],
                Duration::from_secs(60),
            )
            .unwrap();
        let principal = TokenVerifier::hs256(SECRET, "signins", "signins")
            .verify(&token)
            .unwrap();
        assert_eq!(principal.tenant_id, Some(tenant));
        assert!(principal.has(Role::GlobalReader));
        assert!(!principal.has(Role::HelpdeskAdministrator));
    }

    #[test]
    fn wrong_secret_audience_and_issuer_are_told_apart() {
        let token = minter()
            .mint("x", None, &[], Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            TokenVerifier::hs256("other", "signins", "signins").verify(&token),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            TokenVerifier::hs256(SECRET, "signins", "elsewhere").verify(&token),
            Err(AuthError::WrongAudience(_))
        ));
        assert!(matches!(
            TokenVerifier::hs256(SECRET, "other", "signins").verify(&token),
            Err(AuthError::WrongIssuer(_))
        ));
    }

    #[test]
    fn unknown_methods_are_denied_and_public_ones_pass() {
        let layer = AuthLayer::new(TokenVerifier::hs256(SECRET, "signins", "signins"), &[]);
        assert!(matches!(
            layer.authorize("/grpc.health.v1.Health/Check", None),
            Ok(None)
        ));
        let refused = layer.authorize("/x.Y/Z", None).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
    }

    fn jwks_of(keys: &[&SigningKey]) -> JwksKeys {
        let jwks = serde_json::json!({
            "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>()
        });
        JwksKeys::parse(&jwks.to_string()).unwrap()
    }

    #[test]
    fn rs256_and_es256_tokens_verify_by_their_kid() {
        let ec = SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), None).unwrap();
        let rsa = SigningKey::from_pem(keys::test_keys::rs256_pem().as_bytes(), None).unwrap();
        let verifier = TokenVerifier::jwks(jwks_of(&[&ec, &rsa]), "signins", "signins");
        let tenant = Uuid::new_v4();

        for key in [&ec, &rsa] {
            let token = TokenMinter::with_key(key, "signins", "signins")
                .mint(
                    "admin",
                    Some(tenant),
                    &[Role::GlobalReader],
                    Duration::from_secs(60),
                )
                .unwrap();
            let principal = verifier.verify(&token).unwrap();
            assert_eq!(principal.tenant_id, Some(tenant));
            assert!(principal.has(Role::GlobalReader));
        }
    }

    #[test]
    fn a_reloaded_jwks_accepts_a_new_key_drops_a_withdrawn_one_and_survives_a_bad_file() {
        let old =
            SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), Some("old")).unwrap();
        let new =
            SigningKey::from_pem(keys::test_keys::rs256_pem().as_bytes(), Some("new")).unwrap();
        let write = |path: &std::path::Path, keys: &[&SigningKey]| {
            let jwks = serde_json::json!({
                "keys": keys.iter().map(|key| key.public_jwk()).collect::<Vec<_>>()
            });
            std::fs::write(path, jwks.to_string()).unwrap();
        };
        let token = |key: &SigningKey| {
            TokenMinter::with_key(key, "signins", "signins")
                .mint("gateway", None, &[], Duration::from_secs(60))
                .unwrap()
        };
        let path = std::env::temp_dir().join(format!("jwks-{}.json", Uuid::new_v4()));
        write(&path, &[&old]);
        let verifier = AuthArgs::with_jwks_file(&path).verifier().unwrap();
        let reload = verifier
            .jwks_reload()
            .expect("a JWKS file is reloaded by default");
        assert_eq!(reload.every, DEFAULT_JWKS_RELOAD);
        assert!(verifier.verify(&token(&old)).is_ok());
        assert_eq!(
            verifier.verify(&token(&new)),
            Err(AuthError::UnknownKey("RS256"))
        );

        // The identity provider publishes its next key beside the current one.
        write(&path, &[&old, &new]);
        assert!(reload.reload().unwrap());
        assert!(verifier.verify(&token(&old)).is_ok());
        assert!(verifier.verify(&token(&new)).is_ok());
        assert!(
            !reload.reload().unwrap(),
            "the same keys again are no change"
        );

        // A file caught half-written, or emptied, leaves the keys in force.
        std::fs::write(&path, "{\"keys\": [").unwrap();
        assert!(reload.reload().is_err());
        std::fs::write(&path, r#"{"keys": []}"#).unwrap();
        assert!(reload.reload().is_err());
        assert!(verifier.verify(&token(&new)).is_ok());

        // The old key is withdrawn.
        write(&path, &[&new]);
        assert!(reload.reload().unwrap());
        assert_eq!(
            verifier.verify(&token(&old)),
            Err(AuthError::UnknownKey("ES256"))
        );
        assert!(verifier.verify(&token(&new)).is_ok());
        std::fs::remove_file(&path).unwrap();

        let mut args = AuthArgs::with_jwks_file(&path);
        args.jwt_jwks_reload = Duration::ZERO;
        write(&path, &[&new]);
        assert!(
            args.verifier().unwrap().jwks_reload().is_none(),
            "0 reads it only at start"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_jwks_verifier_refuses_unknown_kids_missing_kids_foreign_keys_and_hs256() {
        let known =
            SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), Some("known")).unwrap();
        let stranger =
            SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), Some("known")).unwrap();
        let unlisted =
            SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), Some("other")).unwrap();
        let verifier = TokenVerifier::jwks(jwks_of(&[&known]), "signins", "signins");
        let mint = |minter: TokenMinter| {
            minter
                .mint("x", None, &[], Duration::from_secs(60))
                .unwrap()
        };

        let forged = verifier.verify(&mint(TokenMinter::with_key(
            &stranger, "signins", "signins",
        )));
        let unknown = verifier.verify(&mint(TokenMinter::with_key(
            &unlisted, "signins", "signins",
        )));
        let mut no_kid = TokenMinter::with_key(&known, "signins", "signins");
        no_kid.key_id = None;
        let anonymous = verifier.verify(&mint(no_kid));
        let hs256 = verifier.verify(&mint(minter()));

        assert_eq!(forged, Err(AuthError::BadSignature));
        assert_eq!(unknown, Err(AuthError::UnknownKey("ES256")));
        assert_eq!(anonymous, Err(AuthError::MissingKeyId));
        assert!(
            matches!(hs256, Err(AuthError::AlgorithmNotAccepted(..))),
            "{hs256:?}"
        );
    }

    #[test]
    fn an_rsa_key_is_never_used_for_an_es256_token_with_its_kid() {
        let rsa = SigningKey::from_pem(keys::test_keys::rs256_pem().as_bytes(), Some("k")).unwrap();
        let ec = SigningKey::from_pem(keys::test_keys::es256_pem().as_bytes(), Some("k")).unwrap();
        let verifier = TokenVerifier::jwks(jwks_of(&[&rsa]), "signins", "signins");

        let token = TokenMinter::with_key(&ec, "signins", "signins")
            .mint("x", None, &[], Duration::from_secs(60))
            .unwrap();

        assert_eq!(verifier.verify(&token), Err(AuthError::UnknownKey("ES256")));
    }

    #[test]
    fn exp_and_nbf_are_checked_with_sixty_seconds_of_leeway() {
        let verifier = TokenVerifier::hs256(SECRET, "signins", "signins");
        let minter = minter();
        let at = |exp_offset: i64, nbf_offset: i64| {
            let mut claims = minter.claims("x", Duration::ZERO);
            let now = Utc::now().timestamp();
            claims.exp = now + exp_offset;
            claims.nbf = Some(now + nbf_offset);
            verifier.verify(&minter.sign(&claims).unwrap())
        };

        assert!(
            at(-30, -100).is_ok(),
            "expired 30 s ago is inside the leeway"
        );
        assert_eq!(at(-120, -200), Err(AuthError::Expired));
        assert!(at(600, 30).is_ok(), "valid in 30 s is inside the leeway");
        assert_eq!(at(600, 120), Err(AuthError::NotYetValid));
    }

    #[test]
    fn refusals_never_echo_the_token() {
        let layer = AuthLayer::new(
            TokenVerifier::hs256("other", "signins", "signins"),
            &[("/x.Y/Z", AccessRule::AnySignedIn)],
        );
        let token = minter()
            .mint("x", None, &[], Duration::from_secs(60))
            .unwrap();
        let refused = layer
            .authorize("/x.Y/Z", Some(&format!("Bearer {token}")))
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert_eq!(refused.message(), "token signature is invalid");
        for part in token.split('.') {
            assert!(!refused.message().contains(part));
        }
    }

    #[test]
    fn a_service_without_key_material_says_what_to_set() {
        let args = AuthArgs {
            jwt_secret: None,
            jwt_jwks_file: None,
            jwt_jwks_reload: DEFAULT_JWKS_RELOAD,
            jwt_issuer: "signins".into(),
            jwt_audience: "signins".into(),
        };
        let refused = args.verifier().unwrap_err().to_string();
        assert!(
            refused.contains("--jwt-jwks-file") && refused.contains("--jwt-secret"),
            "{refused}"
        );
        let refused = ServiceKeyArgs::default()
            .minter(&args)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("--service-key-file"), "{refused}");
    }

    #[test]
    fn a_service_credential_is_reused_while_fresh_and_renewed_before_it_expires() {
        let credential = ServiceCredential::new(
            minter(),
            "query-service",
            vec![Role::FlaggingCheck],
            Duration::from_secs(300),
        );
        let first = credential.bearer().unwrap();
        assert_eq!(credential.bearer().unwrap(), first, "reused while fresh");

        // Less than a third of its lifetime left: the next call signs a new one.
        let near_expiry = Utc::now().timestamp() + 60;
        *credential.cached.lock().unwrap() = Some(("old-token".into(), near_expiry));
        let renewed = credential.bearer().unwrap();

        assert_ne!(renewed, "Bearer old-token");
        let principal = TokenVerifier::hs256(SECRET, "signins", "signins")
            .verify(renewed.trim_start_matches("Bearer "))
            .unwrap();
        assert_eq!(principal.subject, "query-service");
        assert_eq!(principal.tenant_id, None);
        assert!(principal.has(Role::FlaggingCheck));
    }

    #[test]
    fn role_claims_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_claim(role.claim()), Some(role));
        }
    }
}

/// How often the JWKS file is read again unless `--jwt-jwks-reload` says otherwise.
pub const DEFAULT_JWKS_RELOAD: Duration = Duration::from_secs(60);

/// Token settings both services take on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Shared secret for HS256 bearer tokens (development).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS file with the RS256/ES256 public keys tokens are verified with, chosen by `kid`
    /// (production). With --jwt-secret as well, HS256 tokens are also accepted.
    #[arg(long, env = "AUTH_JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,
    /// How often the JWKS file is read again, so a rotated key is accepted (and a withdrawn
    /// one refused) without a restart; an unreadable or empty file keeps the keys in force.
    /// `0` reads it only at start.
    #[arg(long, env = "AUTH_JWT_JWKS_RELOAD", default_value = "1m", value_parser = crate::duration::parse_duration)]
    pub jwt_jwks_reload: Duration,
    /// Required `iss` of every token.
    #[arg(long, env = "AUTH_JWT_ISSUER", default_value = "signins")]
    pub jwt_issuer: String,
    /// Required `aud` of every token.
    #[arg(long, env = "AUTH_JWT_AUDIENCE", default_value = "signins")]
    pub jwt_audience: String,
}

impl AuthArgs {
    /// Development settings with a given secret (tests, tools).
    pub fn with_secret(secret: &str) -> Self {
        Self {
            jwt_secret: Some(secret.to_owned()),
            jwt_jwks_file: None,
            jwt_jwks_reload: DEFAULT_JWKS_RELOAD,
            jwt_issuer: "signins".into(),
            jwt_audience: "signins".into(),
        }
    }

    /// Production settings: RS256/ES256 keys from a JWKS file, no shared secret.
    pub fn with_jwks_file(path: &Path) -> Self {
        Self {
            jwt_secret: None,
            jwt_jwks_file: Some(path.to_owned()),
            jwt_jwks_reload: DEFAULT_JWKS_RELOAD,
            jwt_issuer: "signins".into(),
            jwt_audience: "signins".into(),
        }
    }

    /// The secret, when one was given and is not empty.
    pub fn secret(&self) -> Option<&str> {
        self.jwt_secret
            .as_deref()
            .filter(|secret| !secret.is_empty())
    }

    /// The verifier, or the one sentence an operator needs when no key material was given or
    /// the JWKS file is unusable.
    pub fn verifier(&self) -> Result<TokenVerifier, KeyError> {
        let jwks = self
            .jwt_jwks_file
            .as_deref()
            .map(JwksKeys::load)
            .transpose()?;
        match (jwks, self.secret()) {
            (Some(jwks), secret) => {
                let mut verifier = TokenVerifier::jwks(jwks, &self.jwt_issuer, &self.jwt_audience);
                if let Some(path) = &self.jwt_jwks_file
                    && !self.jwt_jwks_reload.is_zero()
                {
                    verifier = verifier.reloading_from(path, self.jwt_jwks_reload);
                }
                Ok(match secret {
                    Some(secret) => verifier.and_hs256(secret),
                    None => verifier,
                })
            }
            (None, Some(secret)) => Ok(TokenVerifier::hs256(
                secret,
                &self.jwt_issuer,
                &self.jwt_audience,
            )),
            (None, None) => Err(KeyError::NoVerificationKey),
        }
    }

    /// An HS256 minter with the shared secret.
    pub fn minter(&self) -> Result<TokenMinter, KeyError> {
        self.secret()
            .map(|secret| TokenMinter::hs256(secret, &self.jwt_issuer, &self.jwt_audience))
            .ok_or(KeyError::NoSigningKey)
    }
}

/// How query-service signs its own token for flag-service: with a private key when
/// flag-service verifies by JWKS, else with the shared secret of [`AuthArgs`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServiceKeyArgs {
    /// PEM private key (EC P-256 for ES256, or RSA for RS256) that signs this service's own
    /// token; its public half goes into the other service's JWKS.
    #[arg(long, env = "SERVICE_KEY_FILE")]
    pub service_key_file: Option<PathBuf>,
    /// The `kid` of that key; default: its RFC 7638 thumbprint (what `signins-token jwk` prints).
    #[arg(long, env = "SERVICE_KEY_ID", requires = "service_key_file")]
    pub service_key_id: Option<String>,
}

impl ServiceKeyArgs {
    /// The minter for the service's own credential: the key file if given, else the secret.
    pub fn minter(&self, auth: &AuthArgs) -> Result<TokenMinter, KeyError> {
        match &self.service_key_file {
            Some(path) => {
                let key = SigningKey::load(path, self.service_key_id.as_deref())?;
                Ok(TokenMinter::with_key(
                    &key,
                    &auth.jwt_issuer,
                    &auth.jwt_audience,
                ))
            }
            None => auth.minter(),
        }
    }
}
