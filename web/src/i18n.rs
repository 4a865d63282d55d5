//! English and French. The language comes from the browser (`navigator.language`) and
//! can be switched; the choice is kept in `localStorage`. The admin console's texts are
//! compiled only into its bundle (feature `console`).

use crate::api::ApiErr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
}

impl Lang {
    pub fn detect() -> Lang {
        let window = web_sys::window();
        let stored = window
            .as_ref()
            .and_then(|w| w.local_storage().ok().flatten())
            .and_then(|s| s.get_item("bitmail-lang").ok().flatten());
        let browser = window.and_then(|w| w.navigator().language()).unwrap_or_default();
        Lang::from_code(stored.as_deref().unwrap_or(&browser))
    }

    pub fn from_code(code: &str) -> Lang {
        if code.to_ascii_lowercase().starts_with("fr") { Lang::Fr } else { Lang::En }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    pub fn remember(self) {
        if let Some(s) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = s.set_item("bitmail-lang", self.code());
        }
        if let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
            let _ = el.set_attribute("lang", self.code());
        }
    }

    pub fn locale(self) -> &'static str {
        match self {
            Lang::En => "en-GB",
            Lang::Fr => "fr-FR",
        }
    }
}

/// (key, English, French)
const TEXTS: &[(&str, &str, &str)] = &[
    ("sign_in", "Sign in", "Se connecter"),
    ("sign_out", "Sign out", "Se déconnecter"),
    ("name", "Name", "Nom"),
    ("password", "Password", "Mot de passe"),
    (
        "first_login",
        "The first sign-in with a new name creates the account.",
        "La première connexion avec un nouveau nom crée le compte.",
    ),
    ("inbox", "Inbox", "Boîte de réception"),
    ("sent", "Sent", "Envoyés"),
    ("compose", "Compose", "Écrire"),
    ("status", "Status", "État"),
    ("to", "To", "À"),
    ("cc", "Cc", "Cc"),
    ("bcc", "Bcc", "Cci"),
    ("from", "From", "De"),
    ("subject", "Subject", "Objet"),
    ("body", "Message (Markdown)", "Message (Markdown)"),
    ("preview", "Preview", "Aperçu"),
    ("attachments", "Attachments", "Pièces jointes"),
    ("send", "Send", "Envoyer"),
    ("sending", "Sending…", "Envoi…"),
    ("sent_ok", "Message sent.", "Message envoyé."),
    ("separate", "Separate addresses with ; or ,", "Séparez les adresses par ; ou ,"),
    ("empty", "No messages.", "Aucun message."),
    ("newer", "Newer", "Plus récents"),
    ("older", "Older", "Plus anciens"),
    ("menu", "Menu", "Menu"),
    ("loading", "Loading…", "Chargement…"),
    ("unread", "unread", "non lus"),
    ("reply", "Reply", "Répondre"),
    ("mark_unread", "Mark unread", "Marquer non lu"),
    ("mark_read", "Mark read", "Marquer lu"),
    ("delete", "Delete", "Supprimer"),
    ("deleted", "Message deleted.", "Message supprimé."),
    ("back", "Back", "Retour"),
    ("conversation", "Conversation", "Conversation"),
    ("show_images", "Show remote images", "Afficher les images distantes"),
    ("images_blocked", "Remote images are blocked.", "Les images distantes sont bloquées."),
    ("no_subject", "(no subject)", "(sans objet)"),
    ("providers", "Providers", "Fournisseurs"),
    ("circuit", "Circuit", "Circuit"),
    ("success", "Success", "Réussite"),
    ("latency", "Latency p50/p99", "Latence p50/p99"),
    ("queue", "Queue depth", "File d'attente"),
    ("nodes", "Delivery nodes", "Nœuds d'envoi"),
    ("node_up", "reachable since", "joignable depuis"),
    ("node_down", "unreachable since", "injoignable depuis"),
    ("node_waiting", "messages waiting", "messages en attente"),
    ("node_silent", "not reporting", "ne se signale plus"),
    (
        "degraded",
        "No provider can be tried now: mail waits in the queue.",
        "Aucun fournisseur n'est disponible : le courrier attend dans la file.",
    ),
    ("chart", "Sent per provider, last hour", "Envoyés par fournisseur, dernière heure"),
    ("recent", "Recent deliveries", "Livraisons récentes"),
    ("delivery", "Delivery", "Livraison"),
    (
        "status_last_known",
        "The delivery service cannot say now: this is the last known state.",
        "Le service de livraison ne peut pas répondre : voici le dernier état connu.",
    ),
    (
        "warn_claims_local",
        "Caution: this message came from outside but claims to be from your own domain. It may be forged.",
        "Attention : ce message vient de l'extérieur mais prétend venir de votre propre domaine. Il est peut-être falsifié.",
    ),
    (
        "warn_failed_checks",
        "The sender's domain did not vouch for this message (SPF or DKIM failed).",
        "Le domaine de l'expéditeur ne garantit pas ce message (échec SPF ou DKIM).",
    ),
    ("warn_spam", "This message was judged to be spam.", "Ce message a été jugé indésirable."),
    ("warn_other", "This message raised a warning.", "Ce message a déclenché un avertissement."),
    ("verdicts", "Checks:", "Vérifications :"),
    (
        "shortcuts",
        "Keys: j/k move · Enter open · c compose · r reply · # delete · Ctrl+Enter send",
        "Touches : j/k déplacer · Entrée ouvrir · c écrire · r répondre · # supprimer · Ctrl+Entrée envoyer",
    ),
    ("language", "Language", "Langue"),
    ("st_sent", "sent", "envoyé"),
    ("st_delivered", "delivered", "distribué"),
    ("st_queued", "queued", "en file"),
    ("st_sending", "sending", "envoi"),
    ("st_deferred", "deferred", "différé"),
    ("st_failed", "failed", "échec"),
    ("st_unknown", "unknown", "inconnu"),
    ("via", "via", "via"),
    ("local", "local", "local"),
    ("none_yet", "Nothing yet.", "Rien pour l'instant."),
    // The admin console's entry in the navigation; its own texts are `CONSOLE_TEXTS`.
    ("admin", "Admin", "Administration"),
    (
        "e_network",
        "The server cannot be reached. Check your connection and try again.",
        "Le serveur est injoignable. Vérifiez votre connexion et réessayez.",
    ),
    ("e_unauthorized", "Your session has ended. Please sign in again.", "Votre session a pris fin. Reconnectez-vous."),
    ("e_wrong_password", "Wrong name or password.", "Nom ou mot de passe incorrect."),
    (
        "e_csrf",
        "This page is out of date. Reload it and try again.",
        "Cette page n'est plus à jour. Rechargez-la et réessayez.",
    ),
    ("e_forbidden", "This request was refused.", "Cette demande a été refusée."),
    ("e_not_found", "This message no longer exists.", "Ce message n'existe plus."),
    ("e_payload_too_large", "Too large:", "Trop volumineux :"),
    (
        "e_too_many_requests",
        "Too many failed attempts. Wait a few minutes and try again.",
        "Trop d'essais infructueux. Patientez quelques minutes puis réessayez.",
    ),
    (
        "e_unavailable",
        "The mail queue is full for now. Try again later.",
        "La file d'envoi est pleine. Réessayez plus tard.",
    ),
    (
        "e_upstream",
        "A BitMail service is unreachable. Try again in a moment.",
        "Un service BitMail est injoignable. Réessayez dans un instant.",
    ),
    ("e_internal", "Something went wrong on the server.", "Une erreur s'est produite sur le serveur."),
    ("e_bad_request", "Please check:", "Vérifiez :"),
];

/// The admin console's texts, (key, English, French): only in its bundle.
#[cfg(feature = "console")]
const CONSOLE_TEXTS: &[(&str, &str, &str)] = &[
    ("tenants", "Tenants", "Locataires"),
    ("tenant", "Tenant", "Locataire"),
    ("tenant_new", "New tenant", "Nouveau locataire"),
    ("tenant_id", "Id", "Identifiant"),
    ("display_name", "Name", "Nom"),
    ("domains", "Domains", "Domaines"),
    ("domains_hint", "Sending domains (separated by commas)", "Domaines d'envoi (séparés par des virgules)"),
    (
        "addresses_hint",
        "Exact sending addresses (separated by commas)",
        "Adresses d'envoi exactes (séparées par des virgules)",
    ),
    ("state", "State", "État"),
    ("active", "active", "actif"),
    ("suspended", "suspended", "suspendu"),
    ("suspend", "Suspend", "Suspendre"),
    ("resume", "Resume", "Reprendre"),
    ("pause", "Pause", "Mettre en pause"),
    ("actions", "Actions", "Actions"),
    ("create", "Create", "Créer"),
    ("save", "Save", "Enregistrer"),
    ("saved", "Saved.", "Enregistré."),
    ("tenant_created", "Tenant created.", "Locataire créé."),
    ("tenant_suspended", "Tenant suspended: its keys are refused.", "Locataire suspendu : ses clés sont refusées."),
    ("tenant_resumed", "Tenant resumed.", "Locataire réactivé."),
    ("quotas", "Quotas", "Quotas"),
    ("q_per_day", "Messages per day", "Messages par jour"),
    ("q_per_second", "Messages per second", "Messages par seconde"),
    ("q_burst", "Burst", "Rafale"),
    ("q_max_recipients", "Recipients per message", "Destinataires par message"),
    ("q_max_message_bytes", "Message size (bytes)", "Taille d'un message (octets)"),
    ("keys", "API keys", "Clés d'API"),
    ("key_new", "New key", "Nouvelle clé"),
    ("key_name", "Key name", "Nom de la clé"),
    ("prefix", "Prefix", "Préfixe"),
    ("scopes", "Scopes", "Droits"),
    ("created", "Created", "Créée le"),
    ("last_used", "Last used", "Dernière utilisation"),
    ("expires", "Expires", "Expire le"),
    ("expires_days", "Expires after (days, empty: never)", "Expire après (jours, vide : jamais)"),
    ("revoked", "Revoked", "Révoquée"),
    ("revoke", "Revoke", "Révoquer"),
    (
        "revoke_sure",
        "Revoke this key? Whoever uses it will be refused.",
        "Révoquer cette clé ? Ceux qui l'utilisent seront refusés.",
    ),
    ("cancel", "Cancel", "Annuler"),
    ("key_created", "Key created.", "Clé créée."),
    ("key_revoked", "Key revoked.", "Clé révoquée."),
    (
        "key_once",
        "Copy this secret now: you will not see it again.",
        "Copiez ce secret maintenant : vous ne le reverrez plus.",
    ),
    ("copy", "Copy", "Copier"),
    ("copied", "Copied.", "Copié."),
    (
        "copy_failed",
        "The browser refused to copy: select the text and copy it.",
        "Le navigateur a refusé de copier : sélectionnez le texte et copiez-le.",
    ),
    ("done", "Done", "Terminé"),
    ("usage", "Usage", "Utilisation"),
    ("webhooks", "App webhooks", "Webhooks des applications"),
    ("webhook_url", "URL", "URL"),
    ("webhook_format", "Shape", "Format"),
    ("webhook_delivered", "Delivered", "Remis"),
    ("webhook_dropped", "Dropped", "Abandonnés"),
    ("webhook_failures", "Failures in a row", "Échecs consécutifs"),
    ("webhook_last_attempt", "Last attempt", "Dernier essai"),
    ("webhook_last_answer", "Last answer", "Dernière réponse"),
    ("webhook_next", "Next try", "Prochain essai"),
    ("today", "Today", "Aujourd'hui"),
    ("last_31", "Last 31 days", "31 derniers jours"),
    ("refresh", "Refresh", "Actualiser"),
    ("provider", "Provider", "Fournisseur"),
    ("in_flight", "In flight", "En cours"),
    ("last_error", "Last error", "Dernière erreur"),
    ("backlog", "Backlog", "En attente"),
    ("provider_paused", "Provider paused.", "Fournisseur mis en pause."),
    ("provider_resumed", "Provider resumed.", "Fournisseur repris."),
    ("suppressions", "Suppressions", "Exclusions"),
    ("suppression_new", "Suppress an address", "Exclure une adresse"),
    ("suppression_added", "Address suppressed.", "Adresse exclue."),
    ("suppression_removed", "Address removed from the list.", "Adresse retirée de la liste."),
    ("address", "Address", "Adresse"),
    ("reason", "Reason", "Motif"),
    ("source", "Source", "Origine"),
    ("search", "Search", "Rechercher"),
    ("add", "Add", "Ajouter"),
    ("remove", "Remove", "Retirer"),
    ("audit", "Audit log", "Journal d'audit"),
    ("actor", "Actor", "Auteur"),
    ("since", "From", "Depuis"),
    ("until", "Until", "Jusqu'au"),
    ("apply", "Filter", "Filtrer"),
    ("export_csv", "Export CSV", "Exporter en CSV"),
    ("before", "Before", "Avant"),
    ("after", "After", "Après"),
    ("newer", "Newer", "Plus récents"),
    ("older", "Older", "Plus anciens"),
    ("lists", "Lists", "Listes"),
    ("list", "List", "Liste"),
    ("list_new", "New list", "Nouvelle liste"),
    ("list_created", "List created.", "Liste créée."),
    ("from_email", "Sender address", "Adresse d'expédition"),
    ("from_name", "Sender name", "Nom d'expéditeur"),
    ("double_opt_in", "Double opt-in", "Double confirmation"),
    (
        "double_opt_in_hint",
        "Double opt-in: a subscriber confirms by mail first",
        "Double confirmation : l'abonné confirme d'abord par mail",
    ),
    ("yes", "yes", "oui"),
    ("no", "no", "non"),
    ("attributes", "Attributes", "Attributs"),
    ("attributes_hint", "Attribute names (separated by commas)", "Noms des attributs (séparés par des virgules)"),
    ("subscribe_url", "Subscribe page", "Page d'inscription"),
    ("form_html", "Form to paste into your own site", "Formulaire à coller dans votre propre site"),
    ("subscribers", "Subscribers", "Abonnés"),
    ("all_states", "All", "Tous"),
    ("previous", "Previous", "Précédents"),
    ("next", "Next", "Suivants"),
    ("x_unconfirmed", "unconfirmed", "non confirmé"),
    ("x_confirmed", "confirmed", "confirmé"),
    ("x_unsubscribed", "unsubscribed", "désabonné"),
    ("import", "Import CSV", "Importer un CSV"),
    (
        "import_file",
        "CSV file: a header row with email, then name, language and the attributes",
        "Fichier CSV : une ligne d'en-tête avec email, puis name, language et les attributs",
    ),
    (
        "import_confirmed",
        "Import as confirmed (you hold their consent)",
        "Importer comme confirmés (vous avez leur consentement)",
    ),
    ("import_started", "Import started.", "Import lancé."),
    ("no_file", "Choose a CSV file first.", "Choisissez d'abord un fichier CSV."),
    ("export_started", "Export started.", "Export lancé."),
    ("tasks", "Background tasks", "Tâches de fond"),
    ("k_import", "Import", "Import"),
    ("k_export", "Export", "Export"),
    ("k_campaign", "Campaign", "Campagne"),
    ("x_queued", "queued", "en attente"),
    ("x_running", "running", "en cours"),
    ("x_done", "done", "terminée"),
    ("x_failed", "failed", "échouée"),
    ("x_cancelled", "cancelled", "annulée"),
    ("x_scheduled", "scheduled", "programmée"),
    ("x_paused", "paused", "en pause"),
    ("added", "Added", "Ajoutés"),
    ("updated", "Updated", "Mis à jour"),
    ("rejected", "Rejected", "Rejetés"),
    ("line", "Line", "Ligne"),
    ("exported", "Rows exported", "Lignes exportées"),
    ("download", "Download CSV", "Télécharger le CSV"),
    ("retry", "Retry", "Réessayer"),
    ("task_cancelled", "Task cancelled.", "Tâche annulée."),
    ("task_retried", "Task started again.", "Tâche relancée."),
    ("campaigns", "Campaigns", "Campagnes"),
    ("campaign_new", "New campaign", "Nouvelle campagne"),
    ("campaign_name", "Campaign", "Campagne"),
    (
        "campaign_body",
        "Message (Markdown, with {{ name }} and the attributes)",
        "Message (Markdown, avec {{ name }} et les attributs)",
    ),
    (
        "campaign_filter",
        "Only the subscribers with (one attribute=value a line; empty: all)",
        "Seulement les abonnés avec (un attribut=valeur par ligne ; vide : tous)",
    ),
    ("bad_filter", "a filter line is not attribute=value", "une ligne du filtre n'est pas attribut=valeur"),
    (
        "campaign_rate",
        "Copies per second (empty: as fast as the quota allows)",
        "Copies par seconde (vide : aussi vite que le quota le permet)",
    ),
    ("campaign_start", "Start at (empty: now)", "Début (vide : maintenant)"),
    ("starts", "Starts", "Débute le"),
    ("campaign_send", "Send the campaign", "Envoyer la campagne"),
    ("campaign_created", "Campaign created.", "Campagne créée."),
    ("campaign_paused", "Campaign paused.", "Campagne mise en pause."),
    ("campaign_resumed", "Campaign resumed.", "Campagne reprise."),
    ("campaign_cancelled", "Campaign cancelled.", "Campagne annulée."),
    ("stats", "Figures", "Chiffres"),
    ("s_total", "Total", "Total"),
    ("s_submitted", "Submitted", "Soumis"),
    ("s_skipped", "Skipped", "Ignorés"),
    ("s_sent", "Sent", "Envoyés"),
    ("s_failed", "Failed", "Échecs"),
    ("s_delivered", "Delivered", "Distribués"),
    ("s_bounced", "Bounced", "Rejetés"),
    ("s_complained", "Complaints", "Plaintes"),
    ("s_unsubscribed", "Unsubscribed", "Désabonnés"),
    ("s_possible_duplicates", "Possible duplicates", "Doublons possibles"),
    ("e_admin_not_found", "Not found:", "Introuvable :"),
    (
        "e_conflict",
        "Changed meanwhile by someone else; reload and try again:",
        "Modifié entre-temps par quelqu'un d'autre ; rechargez et réessayez :",
    ),
];

#[cfg(not(feature = "console"))]
const CONSOLE_TEXTS: &[(&str, &str, &str)] = &[];

pub fn t(lang: Lang, key: &str) -> &'static str {
    match TEXTS.iter().chain(CONSOLE_TEXTS).find(|(k, _, _)| *k == key) {
        Some((_, en, fr)) => match lang {
            Lang::En => en,
            Lang::Fr => fr,
        },
        None => "?",
    }
}

/// What to tell the reader about an API error. Details the server gives for bad input
/// (which address is wrong, which limit) follow the sentence.
pub fn error_text(lang: Lang, e: &ApiErr) -> String {
    let key = match e.code.as_str() {
        "network" => "e_network",
        "unauthorized" => "e_unauthorized",
        "wrong_password" => "e_wrong_password",
        "csrf" => "e_csrf",
        "forbidden" => "e_forbidden",
        "not_found" => "e_not_found",
        "payload_too_large" => "e_payload_too_large",
        "too_many_requests" => "e_too_many_requests",
        "unavailable" => "e_unavailable",
        "upstream" => "e_upstream",
        "bad_request" => "e_bad_request",
        _ if e.status == 413 => "e_payload_too_large",
        _ => "e_internal",
    };
    match key {
        "e_bad_request" | "e_payload_too_large" => format!("{} {}", t(lang, key), e.message),
        _ => t(lang, key).to_owned(),
    }
}

/// The words for a delivery state.
pub fn state_text(lang: Lang, state: &str) -> &'static str {
    match state {
        "sent" => t(lang, "st_sent"),
        "delivered" => t(lang, "st_delivered"),
        "queued" => t(lang, "st_queued"),
        "sending" => t(lang, "st_sending"),
        "deferred" => t(lang, "st_deferred"),
        "failed" => t(lang, "st_failed"),
        _ => t(lang, "st_unknown"),
    }
}
