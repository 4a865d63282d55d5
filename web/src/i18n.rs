//! English and French. The language comes from the browser (`navigator.language`) and
//! can be switched; the choice is kept in `localStorage`.

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
    ("loading", "Loading…", "Chargement…"),
    ("unread", "unread", "non lus"),
    ("reply", "Reply", "Répondre"),
    ("mark_unread", "Mark unread", "Marquer non lu"),
    ("mark_read", "Mark read", "Marquer lu"),
    ("delete", "Delete", "Supprimer"),
    ("deleted", "Message deleted.", "Message supprimé."),
    ("back", "Back", "Retour"),
    ("show_images", "Show remote images", "Afficher les images distantes"),
    ("images_blocked", "Remote images are blocked.", "Les images distantes sont bloquées."),
    ("no_subject", "(no subject)", "(sans objet)"),
    ("providers", "Providers", "Fournisseurs"),
    ("circuit", "Circuit", "Circuit"),
    ("success", "Success", "Réussite"),
    ("latency", "Latency p50/p99", "Latence p50/p99"),
    ("queue", "Queue depth", "File d'attente"),
    (
        "degraded",
        "No provider can be tried now: mail waits in the queue.",
        "Aucun fournisseur n'est disponible : le courrier attend dans la file.",
    ),
    ("chart", "Sent per provider, last hour", "Envoyés par fournisseur, dernière heure"),
    ("recent", "Recent deliveries", "Livraisons récentes"),
    ("delivery", "Delivery", "Livraison"),
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

pub fn t(lang: Lang, key: &str) -> &'static str {
    match TEXTS.iter().find(|(k, _, _)| *k == key) {
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
