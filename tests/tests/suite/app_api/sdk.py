"""Drives the official Python SDKs (sendgrid 6.12, mailgun 1.10) and django-anymail 15
against BitMail's edge, unchanged but for their base URL, and prints what the SDK
answered as one JSON object:
{"status", "headers", "body"} and, when the SDK raised, "raised" (the exception's class).

Usage: python3 sdk.py SCENARIO '{"url": ..., "key": ..., ...}'
The edge's certificate is trusted through SSL_CERT_FILE and REQUESTS_CA_BUNDLE.
"""

import base64
import json
import sys


def answer(status, headers, body, raised=None):
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    out = {"status": status, "headers": {k.lower(): v for k, v in dict(headers or {}).items()}, "body": body}
    if raised:
        out["raised"] = raised
    print(json.dumps(out))


# --- SendGrid -------------------------------------------------------------------------

def sendgrid_send(args, message):
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=args["key"], host=args["url"])
    try:
        response = client.send(message)
        answer(response.status_code, response.headers, response.body)
    except HTTPError as e:
        answer(e.status_code, e.headers, e.body, type(e).__name__)


def sendgrid_rich(args):
    from sendgrid.helpers.mail import (Attachment, Category, Cc, Content, ContentId, CustomArg, Disposition,
                                       FileContent, FileName, FileType, From, Header, Mail, Personalization,
                                       Subject, To)

    mail = Mail()
    mail.from_email = From("ada@bitmail.test", "Ada Lovelace")
    mail.subject = Subject("Your report")
    first = Personalization()
    first.add_to(To("bob@example.net", "Bob"))
    first.add_cc(Cc("carol@example.net"))
    first.add_custom_arg(CustomArg("user", "bob"))
    mail.add_personalization(first)
    second = Personalization()
    second.add_to(To("eve@example.net"))
    second.subject = "Eve's report"
    second.add_custom_arg(CustomArg("user", "eve"))
    mail.add_personalization(second)
    mail.add_content(Content("text/plain", "See the attached report."))
    mail.add_content(Content("text/html", '<p>See the report.</p><img src="cid:logo">'))
    mail.add_attachment(Attachment(FileContent(base64.b64encode(b"%PDF-1.4 report").decode()),
                                   FileName("report.pdf"), FileType("application/pdf"), Disposition("attachment")))
    mail.add_attachment(Attachment(FileContent(base64.b64encode(b"\x89PNG logo").decode()), FileName("logo.png"),
                                   FileType("image/png"), Disposition("inline"), ContentId("logo")))
    mail.add_header(Header("X-Campaign", "spring"))
    mail.add_category(Category("reports"))
    mail.add_custom_arg(CustomArg("app", "billing"))
    sendgrid_send(args, mail)


def sendgrid_plain(args):
    from sendgrid.helpers.mail import Attachment, Mail, MailSettings, SandBoxMode

    mail = Mail(from_email=args.get("from", "ada@bitmail.test"), to_emails=args.get("to", "bob@example.net"),
                subject="Hello", plain_text_content="Hello from the SDK")
    if args.get("attachment_bytes"):
        mail.add_attachment(Attachment(base64.b64encode(b"x" * args["attachment_bytes"]).decode(), "big.bin",
                                       "application/octet-stream", "attachment"))
    if args.get("sandbox"):
        settings = MailSettings()
        settings.sandbox_mode = SandBoxMode(True)
        mail.mail_settings = settings
    if args.get("send_at"):
        mail.send_at = args["send_at"]
    sendgrid_send(args, mail)


def sendgrid_raw(args):
    """A body the helpers would not build (bad input), posted through the SDK's client."""
    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient

    client = SendGridAPIClient(api_key=args["key"], host=args["url"])
    try:
        response = client.client.mail.send.post(request_body=args["body"])
        answer(response.status_code, response.headers, response.body)
    except HTTPError as e:
        answer(e.status_code, e.headers, e.body, type(e).__name__)


def sendgrid_verify_event(args):
    """SendGrid's Event Webhook verification, from the SDK: 200 when valid, else 401."""
    from sendgrid.helpers.eventwebhook import EventWebhook

    webhook = EventWebhook(args["public_key"])
    try:
        valid = webhook.verify_signature(args["payload"], args["signature"], args["timestamp"])
    except Exception as e:  # a malformed signature is a refusal too
        answer(401, {}, str(e), type(e).__name__)
        return
    answer(200 if valid else 401, {}, "")


# --- Mailgun --------------------------------------------------------------------------

def mailgun_client(args):
    from mailgun.client import Client
    from mailgun.config import RetryPolicy

    retries = args.get("retries", 0)
    return Client(auth=("api", args["key"]), api_url=args["url"], retry_policy=RetryPolicy(max_retries=retries,
                                                                                           base_delay=0.1))


def mailgun_answer(response):
    answer(response.status_code, response.headers, response.content)


def mailgun_rich(args):
    data = {
        "from": "Ada Lovelace <ada@bitmail.test>",
        "to": ["Bob <bob@example.net>", "eve@example.net"],
        "subject": "Hello %recipient.name%",
        "text": "Your code is %recipient.code%.",
        "html": '<p>Your code is %recipient.code%.</p><img src="cid:logo.png">',
        "h:X-Campaign": "spring",
        "v:order": "%recipient.code%",
        "o:tag": ["welcome"],
        "o:tracking": "yes",
        "recipient-variables": json.dumps({"bob@example.net": {"name": "Bob", "code": 11},
                                           "eve@example.net": {"name": "Eve", "code": 22}}),
    }
    files = [("attachment", ("report.pdf", b"%PDF-1.4 report", "application/pdf")),
             ("inline", ("logo.png", b"\x89PNG logo", "image/png"))]
    mailgun_answer(mailgun_client(args).messages.create(data=data, files=files, domain=args["domain"]))


def mailgun_plain(args):
    data = {"from": args.get("from", "ada@bitmail.test"), "to": args.get("to", "bob@example.net"),
            "subject": "Hello", "text": "Hello from the SDK"}
    data.update(args.get("extra", {}))
    files = None
    if args.get("attachment_bytes"):
        files = [("attachment", ("big.bin", b"x" * args["attachment_bytes"]))]
    mailgun_answer(mailgun_client(args).messages.create(data=data, files=files, domain=args["domain"]))


def mailgun_mime(args):
    mime = (b"From: Ada <ada@bitmail.test>\r\nTo: bob@example.net\r\nSubject: Raw hello\r\n"
            b"X-Campaign: mime\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
            b"--b\r\nContent-Type: text/plain\r\n\r\nHello from MIME.\r\n"
            b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--b--\r\n")
    response = mailgun_client(args).mimemessage.create(data={"to": "bob@example.net"}, files={"message": mime},
                                                       domain=args["domain"])
    mailgun_answer(response)


# --- django-anymail -----------------------------------------------------------------

def anymail_send(args):
    """django-anymail's SendGrid or Mailgun backend, pointed at the edge by its API URL."""
    import django
    from django.conf import settings

    if args["esp"] == "sendgrid":
        config = {"SENDGRID_API_KEY": args["key"], "SENDGRID_API_URL": args["url"] + "/v3/"}
    else:
        config = {"MAILGUN_API_KEY": args["key"], "MAILGUN_API_URL": args["url"] + "/v3",
                  "MAILGUN_SENDER_DOMAIN": args["domain"]}
    settings.configure(EMAIL_BACKEND="anymail.backends.%s.EmailBackend" % args["esp"], ANYMAIL=config,
                       INSTALLED_APPS=["anymail"])
    django.setup()
    from anymail.message import AnymailMessage

    message = AnymailMessage(subject="Hello from Django", body="Plain body", from_email="Ada <ada@bitmail.test>",
                             to=["bob@example.net"])
    message.attach_alternative("<p>HTML body</p>", "text/html")
    message.attach("report.pdf", b"%PDF-1.4 report", "application/pdf")
    message.metadata = {"order": "42"}
    message.tags = ["welcome"]
    try:
        message.send()
    except Exception as e:
        answer(0, {}, str(e), type(e).__name__)
        return
    status = message.anymail_status
    answer(200, {}, json.dumps({"status": sorted(status.status), "message_id": str(status.message_id)}))


SCENARIOS = {
    "sendgrid_rich": sendgrid_rich,
    "sendgrid_plain": sendgrid_plain,
    "sendgrid_raw": sendgrid_raw,
    "sendgrid_verify_event": sendgrid_verify_event,
    "mailgun_rich": mailgun_rich,
    "mailgun_plain": mailgun_plain,
    "mailgun_mime": mailgun_mime,
    "anymail_send": anymail_send,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](json.loads(sys.argv[2]))
