//! The gRPC surface of query-service: convert the request, call [`SignInLog`], convert back.
//! Who may call which RPC is decided before this, by the access table in [`ACCESS`].

use crate::convert::{self, PageEncoder};
use crate::domain::sign_in::MAX_BATCH;
use crate::error::QueryError;
use crate::sign_ins::{Recorded, SignInLog};
use futures::StreamExt;
use signins_common::auth::{AccessRule, AccessTable, Role, principal};
use signins_proto::encoded::EncodedListSignInsResponse;
use signins_proto::encoded::query::v1::sign_in_service_server;
use signins_proto::query::v1 as pb;
use std::pin::Pin;
use tonic::{Request, Response, Status, Streaming};

/// Reader roles and help desk; plain users are let through to read their own sign-ins.
const LOG_READERS: &[Role] = Role::READERS_AND_HELPDESK;

/// Who may call each RPC of `signins.query.v1.SignInService` (docs/security.md shows the same).
pub const ACCESS: AccessTable = &[
    (
        "/signins.query.v1.SignInService/RecordSignIns",
        AccessRule::AnyOf(&[Role::SignInLogsWrite]),
    ),
    (
        "/signins.query.v1.SignInService/StreamSignIns",
        AccessRule::AnyOf(&[Role::SignInLogsWrite]),
    ),
    (
        "/signins.query.v1.SignInService/ListSignIns",
        AccessRule::AnyOfOrPlainUser(LOG_READERS),
    ),
    (
        "/signins.query.v1.SignInService/GetSignIn",
        AccessRule::AnyOfOrPlainUser(LOG_READERS),
    ),
    (
        "/signins.query.v1.SignInService/WatchSignIns",
        AccessRule::AnyOfOrPlainUser(LOG_READERS),
    ),
];

/// Events of a stream are committed in chunks of this many.
const STREAM_CHUNK: usize = 500;

#[derive(Debug, Clone)]
pub struct SignInApi {
    log: SignInLog,
}

impl SignInApi {
    pub fn new(log: SignInLog) -> Self {
        Self { log }
    }

    fn validate(
        &self,
        first_index: usize,
        events: Vec<pb::SignIn>,
    ) -> Result<Vec<crate::domain::sign_in::SignIn>, QueryError> {
        let bounds = self.log.time_bounds();
        events
            .into_iter()
            .enumerate()
            .map(|(offset, event)| convert::sign_in(first_index + offset, event, &bounds))
            .collect()
    }
}

fn counts(recorded: Recorded) -> pb::RecordSignInsResponse {
    pb::RecordSignInsResponse {
        recorded: recorded.recorded,
        duplicates: recorded.duplicates,
    }
}

type WatchStream =
    Pin<Box<dyn futures::Stream<Item = Result<pb::WatchSignInsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl sign_in_service_server::SignInService for SignInApi {
    async fn record_sign_ins(
        &self,
        request: Request<pb::RecordSignInsRequest>,
    ) -> Result<Response<pb::RecordSignInsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let events = request.into_inner().sign_ins;
        if events.len() > MAX_BATCH {
            return Err(QueryError::invalid(
                "signIns",
                format!("at most {MAX_BATCH} events per call, got {}", events.len()),
            )
            .into());
        }
        // The whole batch is validated before anything is stored: one bad event rejects it all.
        let sign_ins = self.validate(0, events)?;
        let recorded = self.log.record(&caller, sign_ins, 0).await?;
        Ok(Response::new(counts(recorded)))
    }

    async fn stream_sign_ins(
        &self,
        request: Request<Streaming<pb::SignIn>>,
    ) -> Result<Response<pb::RecordSignInsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let mut stream = request.into_inner();
        let mut total = Recorded::default();
        let mut chunk = Vec::with_capacity(STREAM_CHUNK);
        let mut next_index = 0;
        while let Some(event) = stream.next().await {
            chunk.push(event?);
            if chunk.len() == STREAM_CHUNK {
                let first = next_index;
                next_index += chunk.len();
                let sign_ins = self.validate(first, std::mem::take(&mut chunk))?;
                total += self.log.record(&caller, sign_ins, first).await?;
            }
        }
        if !chunk.is_empty() {
            let sign_ins = self.validate(next_index, chunk)?;
            total += self.log.record(&caller, sign_ins, next_index).await?;
        }
        Ok(Response::new(counts(total)))
    }

    async fn list_sign_ins(
        &self,
        request: Request<pb::ListSignInsRequest>,
    ) -> Result<Response<EncodedListSignInsResponse>, Status> {
        let caller = principal(&request)?.clone();
        let request = request.into_inner();
        let mut page = PageEncoder::default();
        let next_page_token = self
            .log
            .list(
                &caller,
                &request.filter,
                request.top,
                &request.order_by,
                &request.page_token,
                |sign_in| page.push(sign_in),
            )
            .await?;
        Ok(Response::new(page.finish(next_page_token.as_deref())))
    }

    async fn get_sign_in(
        &self,
        request: Request<pb::GetSignInRequest>,
    ) -> Result<Response<pb::SignIn>, Status> {
        let caller = principal(&request)?.clone();
        let id = convert::guid("id", &request.into_inner().id)?;
        let sign_in = self.log.get(&caller, id).await?;
        Ok(Response::new(convert::to_wire(sign_in)))
    }

    type WatchSignInsStream = WatchStream;

    async fn watch_sign_ins(
        &self,
        _request: Request<pb::WatchSignInsRequest>,
    ) -> Result<Response<Self::WatchSignInsStream>, Status> {
        Err(QueryError::Unimplemented("WatchSignIns is not implemented yet").into())
    }
}
