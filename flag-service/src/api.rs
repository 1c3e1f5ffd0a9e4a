//! The gRPC surface of flag-service: convert the request, call [`Flagging`], convert back.
//! Who may call which RPC is decided before this, by the access table in [`ACCESS`].

use crate::convert::{self, FieldPath};
use crate::flagging::Flagging;
use signins_common::auth::{AccessRule, AccessTable, Role, principal};
use signins_proto::flag::v1 as pb;
use tonic::{Request, Response, Status};

/// Reader roles and help desk may list a tenant's flag sessions.
const SESSION_LISTERS: &[Role] = Role::READERS_AND_HELPDESK;

/// Who may call each RPC of `signins.flag.v1.FlagService` (docs/security.md shows the same).
pub const ACCESS: AccessTable = &[
    (
        "/signins.flag.v1.FlagService/EnableFlagging",
        AccessRule::AnyOf(&[Role::FlaggingWrite]),
    ),
    (
        "/signins.flag.v1.FlagService/DisableFlagging",
        AccessRule::AnyOf(&[Role::FlaggingWrite]),
    ),
    (
        "/signins.flag.v1.FlagService/GetFlagStatus",
        AccessRule::AnyOf(&[Role::FlaggingWrite]),
    ),
    (
        "/signins.flag.v1.FlagService/CheckFlags",
        AccessRule::AnyOf(&[Role::FlaggingCheck]),
    ),
    (
        "/signins.flag.v1.FlagService/ListFlagSessions",
        AccessRule::AnyOf(SESSION_LISTERS),
    ),
];

#[derive(Debug, Clone)]
pub struct FlagApi {
    flagging: Flagging,
}

impl FlagApi {
    pub fn new(flagging: Flagging) -> Self {
        Self { flagging }
    }
}

#[tonic::async_trait]
impl pb::flag_service_server::FlagService for FlagApi {
    async fn enable_flagging(
        &self,
        request: Request<pb::EnableFlaggingRequest>,
    ) -> Result<Response<pb::EnableFlaggingResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let key = convert::flag_key(
            FieldPath::Top,
            &request.tenant_id,
            &request.user_id,
            request.client,
        )?;
        let upn = convert::user_principal_name(request.user_principal_name)?;
        let trigger = convert::trigger(request.trigger)?;
        let enabled = self.flagging.enable(&caller, key, upn, trigger).await?;
        Ok(Response::new(pb::EnableFlaggingResponse {
            session: Some(convert::session(enabled.session, self.flagging.now())),
            created: Some(enabled.created),
        }))
    }

    async fn disable_flagging(
        &self,
        request: Request<pb::DisableFlaggingRequest>,
    ) -> Result<Response<pb::DisableFlaggingResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let key = convert::flag_key(
            FieldPath::Top,
            &request.tenant_id,
            &request.user_id,
            request.client,
        )?;
        let session = self.flagging.disable(&caller, key).await?;
        let now = self.flagging.now();
        Ok(Response::new(pb::DisableFlaggingResponse {
            session: session.map(|session| convert::session(session, now)),
        }))
    }

    async fn get_flag_status(
        &self,
        request: Request<pb::GetFlagStatusRequest>,
    ) -> Result<Response<pb::GetFlagStatusResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let key = convert::flag_key(
            FieldPath::Top,
            &request.tenant_id,
            &request.user_id,
            request.client,
        )?;
        let status = self.flagging.status(&caller, key).await?;
        let now = self.flagging.now();
        Ok(Response::new(pb::GetFlagStatusResponse {
            flagged: Some(status.session.is_some()),
            session: status.session.map(|session| convert::session(session, now)),
            remaining: status
                .remaining
                .and_then(|remaining| prost_types::Duration::try_from(remaining).ok()),
        }))
    }

    async fn check_flags(
        &self,
        request: Request<pb::CheckFlagsRequest>,
    ) -> Result<Response<pb::CheckFlagsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let checks = convert::checks(request.into_inner())?;
        let results = self.flagging.check_for(&caller, &checks).await?;
        Ok(Response::new(pb::CheckFlagsResponse {
            results: results
                .into_iter()
                .map(|session| pb::FlagCheckResult {
                    flagged: session.is_some(),
                    flag_session_id: session.map(|id| id.to_string()).unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn list_flag_sessions(
        &self,
        request: Request<pb::ListFlagSessionsRequest>,
    ) -> Result<Response<pb::ListFlagSessionsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let query = convert::session_query(request.into_inner())?;
        let (sessions, next) = self.flagging.list(&caller, query).await?;
        let now = self.flagging.now();
        Ok(Response::new(pb::ListFlagSessionsResponse {
            sessions: sessions
                .into_iter()
                .map(|session| convert::session(session, now))
                .collect(),
            next_page_token: next.map(convert::encode_page_token),
        }))
    }
}
