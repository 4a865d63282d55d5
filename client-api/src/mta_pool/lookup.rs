//! GetMessage from whichever node has the message.
//!
//! A message lives in the spool of the node that took it. The node this edge submitted
//! it to is asked first, when known; else (another edge submitted it, or this one has
//! restarted) every node is asked at once and the first status found is the answer.
//! NOT_FOUND from every node is NOT_FOUND; NOT_FOUND from those that answered while
//! others could not be reached is UNAVAILABLE naming them: the message may be waiting
//! there. A node already known to be failing (in back-off) is not asked but counted
//! unreachable at once, so that a page listing many messages of a hung node does not
//! wait `mta_timeout_ms` for each; the pool's probe finds out when it is back. Statuses
//! are not mirrored into the store instead: that would cost a store write per state
//! change of every message (ARCHITECTURE.md, "Several nodes").

use bitmail_proto::v1 as pb;
use bitmail_runtime::grpc::Bearer;
use tokio::task::JoinSet;
use tonic::{Code, Status};

use super::{Failure, MtaPool, classify};

impl MtaPool {
    /// The status of message `id`, with `bearer` (its caller's key: a tenant sees only
    /// its own messages). `took_it`: the URL of the node that took it, when the caller
    /// kept it (the webmail does, in the sent mail's document).
    pub(crate) async fn get_message(
        &self,
        bearer: &Bearer,
        id: &str,
        took_it: Option<&str>,
    ) -> Result<pb::MessageStatus, Status> {
        let by_url = || self.nodes.iter().position(|n| Some(n.config.url.as_str()) == took_it);
        let home = self.placed(id).or_else(by_url);
        let mut unreachable = Vec::new();
        // mta-server's own NOT_FOUND, answered when every node says so.
        let mut not_found = None;
        let failing = |i: usize| !self.nodes[i].health().reachable;
        if let Some(i) = home.filter(|i| failing(*i)) {
            unreachable.push(i);
        } else if let Some(i) = home {
            match self.get_from(i, bearer, id).await {
                Ok(s) => return Ok(s),
                Err(s) if classify(&s) != Failure::Answer => unreachable.push(i),
                Err(s) if s.code() == Code::NotFound => not_found = Some(s),
                Err(s) => return Err(s),
            }
        }
        let mut asked = JoinSet::new();
        for i in (0..self.nodes.len()).filter(|i| Some(*i) != home) {
            if failing(i) {
                unreachable.push(i);
                continue;
            }
            let (client, id, timeout) = (self.nodes[i].mta(bearer), id.to_owned(), self.timeout);
            asked.spawn(async move {
                let mut client = client;
                let call = client.get_message(pb::GetMessageRequest { message_id: id });
                let answer = match tokio::time::timeout(timeout, call).await {
                    Ok(answer) => answer.map(tonic::Response::into_inner),
                    Err(_) => Err(Status::deadline_exceeded("no answer in time")),
                };
                (i, answer)
            });
        }
        let mut refusal = None;
        while let Some(done) = asked.join_next().await {
            let Ok((i, answer)) = done else { continue };
            self.note(i, &answer);
            match answer {
                Ok(s) => {
                    self.place(id, i);
                    return Ok(s);
                }
                Err(s) if classify(&s) != Failure::Answer => unreachable.push(i),
                Err(s) if s.code() == Code::NotFound => {
                    not_found.get_or_insert(s);
                }
                Err(s) => refusal = Some(s),
            }
        }
        if let Some(s) = refusal {
            return Err(s);
        }
        if unreachable.is_empty() {
            return Err(not_found.unwrap_or_else(|| Status::not_found(format!("no message with id {id:?}"))));
        }
        unreachable.sort_unstable();
        let names: Vec<&str> = unreachable.iter().map(|i| self.nodes[*i].name()).collect();
        Err(Status::unavailable(format!(
            "message {id} is not on any mta-server that answered; it may be waiting on {}, which cannot be reached now",
            names.join(", ")
        )))
    }

    /// GetMessage on node `i`, noting its health.
    async fn get_from(&self, i: usize, bearer: &Bearer, id: &str) -> Result<pb::MessageStatus, Status> {
        let mut client = self.nodes[i].mta(bearer);
        let call = client.get_message(pb::GetMessageRequest { message_id: id.to_owned() });
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("no answer in time")),
        };
        self.note(i, &answer);
        answer
    }
}
