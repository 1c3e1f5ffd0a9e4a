//! The end of a call: the response body is wrapped so that the status code is read from the
//! trailers when they pass, and the span is closed and the call counted exactly once, when
//! the body ends, fails, or is dropped unfinished (the client went away: `CANCELLED`).

use super::{grpc_status, is_server_error};
use crate::metrics::RpcMetrics;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;

/// What is recorded when a call ends.
pub(super) struct CallEnd {
    pub(super) span: tracing::Span,
    pub(super) started: Instant,
    /// The metrics and the call's `(service, method)` labels.
    pub(super) metrics: Option<(RpcMetrics, (&'static str, &'static str))>,
}

impl CallEnd {
    /// Finishes at once for a trailers-only answer, else hands the end to the body.
    pub(super) fn watch(self, response: http::Response<Body>) -> http::Response<Body> {
        if let Some(code) = grpc_status(response.headers()) {
            self.finish(code);
            return response;
        }
        response.map(|inner| {
            Body::new(TracedBody {
                inner,
                end: Some(self),
            })
        })
    }

    fn finish(self, code: tonic::Code) {
        self.span.record("rpc.grpc.status_code", code as i32);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        if let Some((metrics, names)) = &self.metrics {
            metrics.observe(*names, code, self.started.elapsed());
        }
    }
}

/// The response body, unchanged, with the call's end attached.
struct TracedBody {
    inner: Body,
    /// `None` once the call has been recorded.
    end: Option<CallEnd>,
}

impl TracedBody {
    fn finish(&mut self, code: tonic::Code) {
        if let Some(end) = self.end.take() {
            end.finish(code);
        }
    }
}

impl http_body::Body for TracedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // A streaming handler produces its messages while the body is polled: its logs and
        // spans belong to the call.
        let entered = this.end.as_ref().map(|end| end.span.enter());
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        drop(entered);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(status))) => this.finish(status.code()),
            // The body ended without a status: not a well-formed gRPC answer.
            Poll::Ready(None) => this.finish(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TracedBody {
    fn drop(&mut self) {
        self.finish(tonic::Code::Cancelled);
    }
}
