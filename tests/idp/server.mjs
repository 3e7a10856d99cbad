// A local OpenID provider for the auth tests (panva/oidc-provider, in memory, development
// interactions). The tests start it with `node tests/idp/server.mjs`; it listens on 127.0.0.1
// and prints one JSON line once it is ready:
//   {"issuer":"http://127.0.0.1:P","other_issuer":"http://127.0.0.1:Q"}
// `other_issuer` is a second provider that signs with the SAME keys (for wrong-issuer tests).
// `POST /test/rotate` on the main issuer rotates its signing key (the old key stays published).
//
// Environment: PORT (default 0 = any free port), REDIRECT_URI (the node's /auth/callback,
// default http://127.0.0.1:7070/auth/callback), AUDIENCE (default urn:allmende).
//
// Clients (client_credentials, secret `<id>-secret`): admin, steward, researcher, viewer
// (tokens carry realm_access.roles = [<id>]), norole (no roles), short (viewer, 1 s TTL).
// Client `console` (secret `console-secret`) does the authorization-code flow with PKCE;
// any login works; `alice` gets the roles viewer and researcher, everyone else none.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const redirectUri = process.env.REDIRECT_URI || 'http://127.0.0.1:7070/auth/callback';
const audience = process.env.AUDIENCE || 'urn:allmende';
const ROLES = { admin: ['admin'], steward: ['steward'], researcher: ['researcher'], viewer: ['viewer'], short: ['viewer'], norole: [] };
const ACCOUNT_ROLES = { alice: ['viewer', 'researcher'] };

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

let keys = [newKey()];

function makeProvider(issuer) {
  const clients = Object.keys(ROLES).map((id) => ({
    client_id: id,
    client_secret: `${id}-secret`,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }));
  clients.push({
    client_id: 'console',
    client_secret: 'console-secret',
    grant_types: ['authorization_code'],
    response_types: ['code'],
    redirect_uris: [redirectUri],
    token_endpoint_auth_method: 'client_secret_basic',
  });
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys },
    scopes: ['openid', 'profile', 'allmende'],
    pkce: { required: () => true },
    ttl: {
      ClientCredentials: (ctx, token, client) => (client.clientId === 'short' ? 1 : 600),
      AccessToken: () => 600,
      IdToken: () => 600,
      Grant: () => 600,
      Interaction: () => 600,
      Session: () => 600,
      AuthorizationCode: () => 60,
    },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource, client) => ({
          scope: 'allmende',
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: client.clientId === 'short' ? 1 : 600,
        }),
      },
    },
    extraTokenClaims: async (ctx, token) => {
      const roles = token.accountId ? (ACCOUNT_ROLES[token.accountId] || []) : (ROLES[token.clientId] || []);
      return { realm_access: { roles }, org: 'Stadt Münster' };
    },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub, name: `user ${sub}` }) }),
  });
  provider.on('server_error', (ctx, err) => console.error('idp server_error', err));
  return provider;
}

function listen(server, p) {
  return new Promise((resolve) => server.listen(p, '127.0.0.1', () => resolve(server.address().port)));
}

let main;
const mainServer = http.createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/test/rotate') {
    keys = [newKey(), ...keys];
    main = makeProvider(main.issuer);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kid: keys[0].kid }));
    return;
  }
  main.callback()(req, res);
});
let other;
const otherServer = http.createServer((req, res) => other.callback()(req, res));

const mainPort = await listen(mainServer, port);
main = makeProvider(`http://127.0.0.1:${mainPort}`);
const otherPort = await listen(otherServer, 0);
other = makeProvider(`http://127.0.0.1:${otherPort}`);
console.log(JSON.stringify({ issuer: main.issuer, other_issuer: other.issuer }));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
