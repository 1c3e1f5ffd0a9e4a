//! Who is calling, and may they call this RPC.
//!
//! Every RPC but health and reflection needs `authorization: Bearer <JWT>`. [`AuthLayer`] is
//! the one place that verifies the token and checks the caller's roles against the service's
//! access table ([`AccessRule`] per gRPC method path); handlers receive a verified
//! [`Principal`] in the request extensions and only apply tenant scoping from it.

use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
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
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token 'tid' is not a GUID")]
    BadTenant,
}

/// Verifies HS256 tokens with the shared secret, checking `iss`, `aud`, `exp` and `nbf`.
#[derive(Clone)]
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl TokenVerifier {
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| match error.kind() {
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
            },
        )?;
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

/// Signs HS256 tokens: query-service's own credential towards flag-service, and development
/// tokens printed by `signins-token` and the run script.
#[derive(Clone)]
pub struct TokenMinter {
    key: EncodingKey,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenMinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenMinter")
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl TokenMinter {
    pub fn hs256(secret: &str, issuer: &str, audience: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
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
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.to_owned(),
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            nbf: Some(now),
            iat: Some(now),
            tid,
            roles,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
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

    #[test]
    fn role_claims_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_claim(role.claim()), Some(role));
        }
    }
}

/// Token settings both services take on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Shared secret for HS256 bearer tokens (development).
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
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
            jwt_issuer: "signins".into(),
            jwt_audience: "signins".into(),
        }
    }

    /// The verifier, or the one sentence an operator needs when no key material was given.
    pub fn verifier(&self) -> Result<TokenVerifier, String> {
        match self.jwt_secret.as_deref() {
            Some(secret) if !secret.is_empty() => Ok(TokenVerifier::hs256(
                secret,
                &self.jwt_issuer,
                &self.jwt_audience,
            )),
            _ => Err("no token key material: set --jwt-secret or AUTH_JWT_SECRET".into()),
        }
    }

    pub fn minter(&self) -> Result<TokenMinter, String> {
        match self.jwt_secret.as_deref() {
            Some(secret) if !secret.is_empty() => Ok(TokenMinter::hs256(
                secret,
                &self.jwt_issuer,
                &self.jwt_audience,
            )),
            _ => Err("no token key material: set --jwt-secret or AUTH_JWT_SECRET".into()),
        }
    }
}
