//! The gRPC calls of lists, subscribers and the signed links; the campaign and task
//! calls are in `campaigns.rs`. This file holds the one `Lists` trait impl.

use std::collections::{BTreeMap, BTreeSet};

use backend_server::store::{Fields, StoreError};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::lists_server::Lists as ListsApi;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::mail::check_content;
use super::model::{self, Given, LIST, List, Problems, SUBSCRIBER, Subscriber};
use super::template::campaign_variables;
use super::token::Kind;
use super::{Lists, ListsService, edge, is_edge, tenant_for, wire};
use crate::tenant::Scope;
use bitmail_runtime::time::now_ms;

type Answer<T> = Result<Response<T>, Status>;

impl Lists {
    /// The list as given, checked whole for `tenant`.
    async fn checked_list(
        &self,
        tenant: &str,
        given: &pb::MailingList,
        fields: &BTreeSet<&str>,
    ) -> Result<List, Status> {
        let t = self.tenant(tenant).await?;
        let mut p = Problems::default();
        let all = fields.is_empty();
        let has = |f: &str| all || fields.contains(f);
        if has("name") {
            p.name("name", &given.name, true, model::MAX_NAME_CHARS);
        }
        if has("description") {
            p.name("description", &given.description.replace('\n', " "), false, 1000);
        }
        if has("from_name") {
            p.name("from_name", &given.from_name, false, model::MAX_NAME_CHARS);
        }
        let mut from_email = given.from_email.clone();
        if has("from_email")
            && let Some(a) = p.address("from_email", &given.from_email)
        {
            if !t.may_send_from(&a) {
                p.add("from_email", format!("{a} is not a sending domain or address of tenant {tenant:?}"));
            }
            from_email = a;
        }
        if has("attributes") {
            if given.attributes.len() > model::MAX_ATTRIBUTES {
                p.add("attributes", format!("{} names, at most {}", given.attributes.len(), model::MAX_ATTRIBUTES));
            }
            let mut seen = BTreeSet::new();
            for (i, a) in given.attributes.iter().enumerate() {
                if !model::is_attribute_name(a) || model::BUILT_IN.contains(&a.as_str()) {
                    p.add(
                        format!("attributes[{i}]"),
                        format!("{a:?} is not an attribute name (1 to 64 of a-z, 0-9, _; not email, name or language)"),
                    );
                } else if !seen.insert(a) {
                    p.add(format!("attributes[{i}]"), format!("{a:?} is listed twice"));
                }
            }
        }
        let confirmation: BTreeMap<_, _> =
            given.confirmation.iter().map(|(k, v)| (k.clone(), wire::from_content(v))).collect();
        if has("confirmation") {
            let known = super::template::confirmation_variables(&given.attributes);
            for (language, c) in &confirmation {
                let field = format!("confirmation.{language}");
                if !model::LANGUAGES.contains(&language.as_str()) {
                    p.add(&field, "the languages are en and fr");
                }
                check_content(&field, c, &known, &mut p);
                if !c.markdown.contains("confirm_url") {
                    p.add(format!("{field}.markdown"), "must hold the link {{ confirm_url }}");
                }
            }
        }
        let templates: BTreeMap<_, _> =
            given.templates.iter().map(|(k, v)| (k.clone(), wire::from_content(v))).collect();
        if has("templates") {
            let known = campaign_variables(&given.attributes);
            for (name, c) in &templates {
                if !model::is_attribute_name(name) {
                    p.add(format!("templates.{name}"), "a template name is 1 to 64 of a-z, 0-9, _");
                }
                check_content(&format!("templates.{name}"), c, &known, &mut p);
            }
        }
        p.finish()?;
        let now = now_ms();
        Ok(List {
            id: String::new(),
            version: 0,
            tenant: tenant.to_owned(),
            name: given.name.trim().to_owned(),
            description: given.description.clone(),
            double_opt_in: given.double_opt_in,
            from_email,
            from_name: given.from_name.clone(),
            attributes: given.attributes.clone(),
            confirmation,
            templates,
            created_ms: now,
            updated_ms: now,
        })
    }

    fn url(&self) -> &str {
        self.settings.public_url.trim_end_matches('/')
    }

    async fn create_list(&self, tenant: &str, given: &pb::MailingList) -> Result<List, Status> {
        let mut list = self.checked_list(tenant, given, &BTreeSet::new()).await?;
        let doc = self.store.put(list.fields()).await?;
        list.id = doc.id;
        list.version = doc.version;
        info!(list = %list.id, tenant, "list created");
        Ok(list)
    }

    async fn update_list(&self, tenant: &str, r: &pb::UpdateListRequest) -> Result<List, Status> {
        const FIELDS: [&str; 8] = [
            "name",
            "description",
            "double_opt_in",
            "from_email",
            "from_name",
            "attributes",
            "confirmation",
            "templates",
        ];
        let old = self.list(tenant, &r.list_id).await?;
        let mut p = Problems::default();
        for f in &r.update_fields {
            if !FIELDS.contains(&f.as_str()) {
                p.add("update_fields", format!("{f:?} is not one of {}", FIELDS.join(", ")));
            }
        }
        p.finish()?;
        let given = r.list.clone().unwrap_or_default();
        let names: BTreeSet<&str> = r.update_fields.iter().map(String::as_str).collect();
        let mut merged = wire::list(&old, "");
        for f in &names {
            match *f {
                "name" => merged.name = given.name.clone(),
                "description" => merged.description = given.description.clone(),
                "double_opt_in" => merged.double_opt_in = given.double_opt_in,
                "from_email" => merged.from_email = given.from_email.clone(),
                "from_name" => merged.from_name = given.from_name.clone(),
                "attributes" => merged.attributes = given.attributes.clone(),
                "confirmation" => merged.confirmation = given.confirmation.clone(),
                _ => merged.templates = given.templates.clone(),
            }
        }
        let mut list = self.checked_list(tenant, &merged, &BTreeSet::new()).await?;
        list.created_ms = old.created_ms;
        let updated =
            self.store.update(&old.id, list.fields(), vec![], Some(old.version)).await.map_err(|e| match e {
                StoreError::VersionMismatch { .. } => {
                    Status::aborted("the list changed meanwhile; read it and try again")
                }
                e => e.into(),
            })?;
        List::from_doc(&updated).ok_or_else(|| Status::internal("the list could not be read back"))
    }

    async fn list_any(&self, id: &str) -> Result<List, Status> {
        self.doc(id).await?.and_then(|d| List::from_doc(&d)).ok_or_else(|| Status::not_found(format!("no list {id:?}")))
    }
}

#[tonic::async_trait]
impl ListsApi for ListsService {
    async fn create_list(&self, request: Request<pb::CreateListRequest>) -> Answer<pb::MailingList> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        let given = request.get_ref().list.clone().unwrap_or_default();
        let list = self.0.create_list(&tenant, &given).await?;
        Ok(Response::new(wire::list(&list, self.0.url())))
    }

    async fn get_list(&self, request: Request<pb::GetListRequest>) -> Answer<pb::MailingList> {
        let r = request.get_ref();
        // The hosted subscribe page reads the list it shows, whoever's it is.
        let list = if is_edge(&request)? && r.tenant.is_empty() {
            self.0.list_any(&r.list_id).await?
        } else {
            let (_, tenant) = tenant_for(&request, &r.tenant, Scope::Read)?;
            self.0.list(&tenant, &r.list_id).await?
        };
        Ok(Response::new(wire::list(&list, self.0.url())))
    }

    async fn list_lists(&self, request: Request<pb::ListListsRequest>) -> Answer<pb::ListListsResponse> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        let docs = self.0.all(Fields::from([("kind".into(), LIST.into()), ("tenant".into(), tenant)]), 10_000).await?;
        let lists = docs.iter().filter_map(List::from_doc).map(|l| wire::list(&l, self.0.url())).collect();
        Ok(Response::new(pb::ListListsResponse { lists }))
    }

    async fn update_list(&self, request: Request<pb::UpdateListRequest>) -> Answer<pb::MailingList> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        let list = self.0.update_list(&tenant, request.get_ref()).await?;
        Ok(Response::new(wire::list(&list, self.0.url())))
    }

    async fn subscribe(&self, request: Request<pb::SubscribeRequest>) -> Answer<pb::SubscribeResponse> {
        let r = request.get_ref();
        // The edge's service key subscribes anyone to any list, as the visitor of its
        // hosted page; a tenant's own key (or an admin's) may also vouch for consent.
        let (list, own) = if is_edge(&request)? && r.tenant.is_empty() {
            (self.0.list_any(&r.list_id).await?, false)
        } else {
            let (_, tenant) = tenant_for(&request, &r.tenant, Scope::Send)?;
            (self.0.list(&tenant, &r.list_id).await?, true)
        };
        Ok(Response::new(self.0.subscribe(own, &list, r).await?))
    }

    async fn list_subscribers(
        &self,
        request: Request<pb::ListSubscribersRequest>,
    ) -> Answer<pb::ListSubscribersResponse> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        let r = request.get_ref();
        let list = self.0.list(&tenant, &r.list_id).await?;
        let mut subset = Fields::from([("kind".into(), SUBSCRIBER.into()), ("list".into(), list.id.clone())]);
        if !r.state.is_empty() {
            if !["unconfirmed", "confirmed", "unsubscribed"].contains(&r.state.as_str()) {
                return Err(Status::invalid_argument(format!(
                    "state: {:?} is not unconfirmed, confirmed or unsubscribed",
                    r.state
                )));
            }
            subset.insert("state".into(), r.state.clone());
        }
        if r.limit > 1000 {
            return Err(Status::invalid_argument(format!("limit: {}, at most 1000", r.limit)));
        }
        let limit = if r.limit == 0 { 100 } else { r.limit as usize };
        let token = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let page = self.0.store.lookup(&subset, limit, token).await?;
        let subscribers =
            page.documents.iter().filter_map(Subscriber::from_doc).map(|s| wire::subscriber(&s)).collect();
        Ok(Response::new(pb::ListSubscribersResponse {
            subscribers,
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn read_token(&self, request: Request<pb::TokenRequest>) -> Answer<pb::TokenInfo> {
        edge(&request)?;
        let token = &request.get_ref().token;
        let kind = if token.starts_with("c.") { Kind::Confirm } else { Kind::Subscriber };
        let (claims, sub, list) = self.0.by_token(token, kind).await?;
        let tenant = self.0.tenant(&list.tenant).await?;
        Ok(Response::new(pb::TokenInfo {
            kind: if claims.kind == Kind::Confirm { "confirm" } else { "subscriber" }.into(),
            subscriber: Some(wire::subscriber(&sub)),
            list_name: list.name.clone(),
            tenant_name: tenant.display_name.clone(),
            attributes: list.attributes.clone(),
        }))
    }

    async fn confirm(&self, request: Request<pb::TokenRequest>) -> Answer<pb::Subscriber> {
        edge(&request)?;
        let (_, sub, _) = self.0.by_token(&request.get_ref().token, Kind::Confirm).await?;
        let sub = match sub.state.as_str() {
            "confirmed" => sub,
            "unsubscribed" => {
                return Err(Status::failed_precondition(
                    "this address unsubscribed since; subscribe again to come back",
                ));
            }
            _ => {
                let fields =
                    Fields::from([("state".into(), "confirmed".into()), ("confirmed_ms".into(), now_ms().to_string())]);
                info!(list = %sub.list, subscriber = %sub.id, "subscription confirmed");
                self.0.set(&sub, fields).await?
            }
        };
        Ok(Response::new(wire::subscriber(&sub)))
    }

    async fn unsubscribe(&self, request: Request<pb::UnsubscribeRequest>) -> Answer<pb::Subscriber> {
        edge(&request)?;
        let r = request.get_ref();
        if !["link", "one-click", "mail", "preferences"].contains(&r.reason.as_str()) {
            return Err(Status::invalid_argument(format!(
                "reason: {:?} is not link, one-click, mail or preferences",
                r.reason
            )));
        }
        let (claims, sub, _) = self.0.by_token(&r.token, Kind::Subscriber).await?;
        let sub = self.0.unsubscribe(&sub, &r.reason, claims.campaign.as_deref()).await?;
        Ok(Response::new(wire::subscriber(&sub)))
    }

    async fn update_preferences(&self, request: Request<pb::UpdatePreferencesRequest>) -> Answer<pb::Subscriber> {
        edge(&request)?;
        let r = request.get_ref();
        let (_, sub, list) = self.0.by_token(&r.token, Kind::Subscriber).await?;
        let attributes: BTreeMap<String, String> = r.attributes.clone().into_iter().collect();
        let mut p = Problems::default();
        let given = Given { email: &sub.email, name: &r.name, language: &r.language, attributes: &attributes };
        let (_, language, attributes) = given.check(&list, &mut p);
        p.finish()?;
        let mut fields = Fields::from([("name".into(), r.name.trim().to_owned()), ("language".into(), language)]);
        let remove: Vec<String> =
            sub.attributes.keys().filter(|k| !attributes.contains_key(*k)).map(|k| format!("a.{k}")).collect();
        fields.extend(attributes.into_iter().map(|(k, v)| (format!("a.{k}"), v)));
        let doc = self.0.store.update(&sub.id, fields, remove, None).await?;
        let sub = Subscriber::from_doc(&doc).ok_or_else(|| Status::internal("a subscriber could not be read back"))?;
        Ok(Response::new(wire::subscriber(&sub)))
    }

    async fn create_campaign(&self, request: Request<pb::CreateCampaignRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        let given = request.get_ref().campaign.clone().unwrap_or_default();
        Ok(Response::new(wire::campaign(&self.0.create_campaign(&tenant, given).await?)))
    }

    async fn get_campaign(&self, request: Request<pb::CampaignRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        Ok(Response::new(wire::campaign(&self.0.campaign(&tenant, &request.get_ref().campaign_id).await?)))
    }

    async fn list_campaigns(&self, request: Request<pb::ListCampaignsRequest>) -> Answer<pb::ListCampaignsResponse> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        let campaigns = self.0.campaigns(&tenant, &request.get_ref().list_id).await?;
        Ok(Response::new(pb::ListCampaignsResponse { campaigns: campaigns.iter().map(wire::campaign).collect() }))
    }

    async fn pause_campaign(&self, request: Request<pb::CampaignRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::campaign(
            &self.0.move_campaign(&tenant, &request.get_ref().campaign_id, model::PAUSED).await?,
        )))
    }

    async fn resume_campaign(&self, request: Request<pb::CampaignRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::campaign(
            &self.0.move_campaign(&tenant, &request.get_ref().campaign_id, model::RUNNING).await?,
        )))
    }

    async fn cancel_campaign(&self, request: Request<pb::CampaignRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::campaign(
            &self.0.move_campaign(&tenant, &request.get_ref().campaign_id, model::CANCELLED).await?,
        )))
    }

    async fn trigger(&self, request: Request<pb::TriggerRequest>) -> Answer<pb::Campaign> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::campaign(&self.0.trigger(&tenant, request.get_ref()).await?)))
    }

    async fn import_subscribers(&self, request: Request<pb::ImportRequest>) -> Answer<pb::Task> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::task(&self.0.start_import(&tenant, request.get_ref()).await?)))
    }

    async fn export_subscribers(&self, request: Request<pb::ExportRequest>) -> Answer<pb::Task> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(wire::task(&self.0.start_export(&tenant, &request.get_ref().list_id).await?)))
    }

    async fn get_task(&self, request: Request<pb::TaskRequest>) -> Answer<pb::Task> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        Ok(Response::new(self.0.get_task(&tenant, &request.get_ref().task_id).await?))
    }

    async fn list_tasks(&self, request: Request<pb::ListTasksRequest>) -> Answer<pb::ListTasksResponse> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        Ok(Response::new(pb::ListTasksResponse { tasks: self.0.tasks(&tenant).await? }))
    }

    async fn cancel_task(&self, request: Request<pb::TaskRequest>) -> Answer<pb::Task> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(self.0.cancel_task(&tenant, &request.get_ref().task_id).await?))
    }

    async fn retry_task(&self, request: Request<pb::TaskRequest>) -> Answer<pb::Task> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Send)?;
        Ok(Response::new(self.0.retry_task(&tenant, &request.get_ref().task_id).await?))
    }

    type ReadExportStream = std::pin::Pin<Box<dyn Stream<Item = Result<pb::ExportChunk, Status>> + Send>>;

    async fn read_export(&self, request: Request<pb::TaskRequest>) -> Answer<Self::ReadExportStream> {
        let (_, tenant) = tenant_for(&request, &request.get_ref().tenant, Scope::Read)?;
        Ok(Response::new(self.0.read_export(&tenant, &request.get_ref().task_id).await?))
    }
}
