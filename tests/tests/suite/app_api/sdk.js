// Drives the official Node SDKs (@sendgrid/mail 8.1, mailgun.js 14) against BitMail's
// edge, unchanged but for their base URL, and prints what the SDK answered as one JSON
// line: {"status", "headers", "body"} and, when the SDK rejected, "raised".
//
// Usage: node sdk.js SCENARIO '{"url": ..., "key": ..., ...}'
// The packages are found through NODE_PATH (cargo xtask test installs them into
// target/node-sdks); the edge's certificate is trusted through NODE_EXTRA_CA_CERTS.

'use strict';

function print(status, headers, body, raised) {
  const out = { status, headers: lower(headers), body: typeof body === 'string' ? body : JSON.stringify(body ?? '') };
  if (raised) out.raised = raised;
  console.log(JSON.stringify(out));
}

function lower(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers || {})) out[k.toLowerCase()] = String(v);
  return out;
}

// --- SendGrid ----------------------------------------------------------------------

async function sendgrid(args, message) {
  const mail = require('@sendgrid/mail');
  const { Client } = require('@sendgrid/client');
  const client = new Client();
  client.setApiKey(args.key);
  // setApiKey sets the base URL back to SendGrid's: point it at the edge afterwards.
  client.setDefaultRequest('baseUrl', args.url);
  mail.setClient(client);
  try {
    const [response] = await mail.send(message);
    print(response.statusCode, response.headers, response.body);
  } catch (e) {
    if (!e.response) throw e;
    print(e.code, e.response.headers, e.response.body, e.constructor.name);
  }
}

const sendgridScenarios = {
  sendgrid_rich: (args) => sendgrid(args, {
    from: { email: 'ada@bitmail.test', name: 'Ada Lovelace' },
    subject: 'Your report',
    personalizations: [
      { to: [{ email: 'bob@example.net', name: 'Bob' }], cc: [{ email: 'carol@example.net' }], customArgs: { user: 'bob' } },
      { to: [{ email: 'eve@example.net' }], subject: "Eve's report", customArgs: { user: 'eve' } },
    ],
    text: 'See the attached report.',
    html: '<p>See the report.</p><img src="cid:logo">',
    attachments: [
      { content: Buffer.from('%PDF-1.4 report').toString('base64'), filename: 'report.pdf', type: 'application/pdf', disposition: 'attachment' },
      { content: Buffer.from('PNG logo').toString('base64'), filename: 'logo.png', type: 'image/png', disposition: 'inline', contentId: 'logo' },
    ],
    headers: { 'X-Campaign': 'spring' },
    categories: ['reports'],
    customArgs: { app: 'billing' },
  }),
  sendgrid_plain: (args) => sendgrid(args, {
    to: args.to || 'bob@example.net',
    from: args.from || 'ada@bitmail.test',
    subject: 'Hello',
    text: 'Hello from the SDK',
    mailSettings: args.sandbox ? { sandboxMode: { enable: true } } : undefined,
  }),
};

// --- Mailgun -----------------------------------------------------------------------

async function mailgun(args, data) {
  const Mailgun = require('mailgun.js');
  const FormData = require('form-data');
  const client = new Mailgun(FormData).client({ username: 'api', key: args.key, url: args.url });
  try {
    const answer = await client.messages.create(args.domain, data);
    print(answer.status, {}, answer);
  } catch (e) {
    if (e.status === undefined) throw e;
    print(e.status, {}, { message: e.details || e.message }, e.constructor.name);
  }
}

const mailgunScenarios = {
  mailgun_rich: (args) => mailgun(args, {
    from: 'Ada Lovelace <ada@bitmail.test>',
    to: ['Bob <bob@example.net>', 'eve@example.net'],
    subject: 'Hello %recipient.name%',
    text: 'Your code is %recipient.code%.',
    html: '<p>Your code is %recipient.code%.</p><img src="cid:logo.png">',
    'h:X-Campaign': 'spring',
    'v:order': '%recipient.code%',
    'o:tag': ['welcome'],
    'recipient-variables': JSON.stringify({ 'bob@example.net': { name: 'Bob', code: 11 }, 'eve@example.net': { name: 'Eve', code: 22 } }),
    attachment: [{ filename: 'report.pdf', data: Buffer.from('%PDF-1.4 report') }],
    inline: [{ filename: 'logo.png', data: Buffer.from('PNG logo') }],
  }),
  mailgun_plain: (args) => mailgun(args, Object.assign({
    from: args.from || 'ada@bitmail.test',
    to: args.to || 'bob@example.net',
    subject: 'Hello',
    text: 'Hello from the SDK',
  }, args.extra || {})),
};

const scenarios = Object.assign({}, sendgridScenarios, mailgunScenarios);
scenarios[process.argv[2]](JSON.parse(process.argv[3])).catch((e) => {
  console.error(e);
  process.exit(1);
});
