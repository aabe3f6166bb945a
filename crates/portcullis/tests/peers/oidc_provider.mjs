// A real OpenID provider (the npm package oidc-provider) for the OAuth tests, on loopback.
//
//   node oidc_provider.mjs <port> <keys.json>
//
// Issuer http://127.0.0.1:<port>. Access tokens for any resource indicator are JWTs (RS256)
// whose audience is that resource, with scopes mcp:tools and mcp:admin. Dynamic client
// registration is open; the static client `svc-reader` (secret `svc-reader-secret`) and
// `stranger` (secret `stranger-secret`) use client credentials, and so does `svc-opaque`
// (secret `svc-opaque-secret`), whose access tokens are opaque; the client `gateway` (secret
// `gateway-secret`) may introspect them (RFC 7662) and revocation is on (RFC 7009). Login and consent are
// scripted: every interaction signs in the user `alice` (groups: staff) and grants what was
// asked, so a client completes the authorization-code flow with plain HTTP redirects.
//
// The signing key (and a second key the provider never publishes) are written to keys.json
// as PKCS#1 DER in base64, so the test can forge tokens: with the issuer's key and bad
// claims, or with the unpublished key. Prints `ready` once listening.

import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const [port, keysPath] = process.argv.slice(2);
// oidc-provider lives in .peers/node (the repository's peers), resolved from the working
// directory the test gives.
const require = createRequire(pathToFileURL(`${process.cwd()}/`));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')));

const issuer = `http://127.0.0.1:${port}`;

function rsaKey(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const der = privateKey.export({ format: 'der', type: 'pkcs1' }).toString('base64');
  return { jwk, der };
}

const signing = rsaKey('issuer-key-1');
const rogue = rsaKey('rogue-key');
writeFileSync(keysPath, JSON.stringify({
  issuer,
  kid: signing.jwk.kid,
  der: signing.der,
  rogue_kid: rogue.jwk.kid,
  rogue_der: rogue.der,
}));

const ACCOUNT = 'alice';
const GROUPS = { alice: ['staff'] };

const provider = new Provider(issuer, {
  jwks: { keys: [signing.jwk] },
  clients: [
    {
      client_id: 'svc-reader',
      client_secret: 'svc-reader-secret',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_post',
      response_types: [],
      redirect_uris: [],
      scope: 'mcp:tools mcp:admin',
    },
    {
      client_id: 'svc-opaque',
      client_secret: 'svc-opaque-secret',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_post',
      response_types: [],
      redirect_uris: [],
      scope: 'mcp:tools',
    },
    {
      client_id: 'gateway',
      client_secret: 'gateway-secret',
      grant_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      response_types: [],
      redirect_uris: [],
    },
    {
      client_id: 'stranger',
      client_secret: 'stranger-secret',
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'client_secret_post',
      response_types: [],
      redirect_uris: [],
      scope: 'mcp:tools',
    },
  ],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  scopes: ['openid', 'offline_access', 'mcp:tools', 'mcp:admin'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    registration: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => oneOf ?? undefined,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'mcp:tools mcp:admin',
        audience: resource,
        accessTokenTTL: 300,
        accessTokenFormat: client?.clientId === 'svc-opaque' ? 'opaque' : 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  extraTokenClaims: (ctx, token) => (
    token.accountId ? { groups: GROUPS[token.accountId] ?? [] } : undefined
  ),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  // Loopback redirect URIs (the SDK's callback) for web clients.
  clientBasedCORS: () => true,
});
provider.proxy = false;

// The scripted login and consent.
provider.use(async (ctx, next) => {
  if (!ctx.path.startsWith('/interaction/')) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: ACCOUNT } };
  } else {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: ACCOUNT, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write('ready\n');
});
