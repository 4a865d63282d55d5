//! `ListEvents`: a page of a tenant's event log, the caller's own (`read`) or, for an
//! `admin` key, the one it names. Cursors are the log's sequence numbers, as text.

use bitmail_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::MtaService;
use super::wire::unix_ms;
use crate::auth::caller;
use crate::spool::record::LoggedEvent;
use crate::tenant::Scope;

impl MtaService {
    pub(super) async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = caller(&request)?;
        let request = request.into_inner();
        let tenant = if request.tenant.is_empty() || request.tenant == caller.tenant.id {
            caller.require(Scope::Read)?;
            caller.tenant.id.clone()
        } else {
            caller.require(Scope::Admin)?;
            request.tenant
        };
        let limit = match request.limit {
            0 => 100,
            n @ 1..=1000 => n as usize,
            n => return Err(Status::invalid_argument(format!("limit: {n} is over 1000"))),
        };
        let after = match request.after.as_str() {
            "" => 0,
            cursor => {
                cursor.parse().map_err(|_| Status::invalid_argument(format!("after: {cursor:?} is not a cursor")))?
            }
        };
        let page = self.spool.events(&tenant, after, limit).await?;
        let next_cursor = page.last().map_or(request.after, |(seq, _)| seq.to_string());
        Ok(Response::new(pb::ListEventsResponse {
            events: page.into_iter().map(|(seq, e)| event_to_wire(seq, e)).collect(),
            next_cursor,
        }))
    }
}

fn event_to_wire(seq: u64, e: LoggedEvent) -> pb::LoggedEvent {
    pb::LoggedEvent {
        cursor: seq.to_string(),
        message_id: e.message_id,
        event: e.event,
        source: e.source,
        recipient: e.recipient,
        at_unix_ms: unix_ms(e.at_ms),
        detail: e.detail,
        permanent: e.permanent,
        metadata: e.metadata.into_iter().collect(),
    }
}
