// Test-only: the stock OAuth 2 client openid-client drives phigate's
// RFC 8414 discovery, RFC 7662 introspection (client_secret_basic, then
// client_secret_post) and RFC 7009 revocation. Run by cmd/phigate's
// TestStockOAuthClientDiscoveryIntrospectionRevocation; reads one JSON
// object on stdin:
//   {"issuer": "https://…", "client_id": "tok_…", "client_secret": "phi_…", "token": "phi_…"}
// and prints one JSON object with what each step saw. The server's
// certificate is trusted through NODE_EXTRA_CA_CERTS.
import * as client from 'openid-client';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = {};
const step = async (name, fn) => {
  try {
    out[name] = { ok: true, value: await fn() };
  } catch (e) {
    out[name] = { ok: false, error: String(e && e.message || e), code: e && e.code, cause: e && e.cause && JSON.stringify(e.cause) };
  }
};

const issuer = new URL(input.issuer);
let basic, post;
await step('discovery', async () => {
  // RFC 8414 (not OpenID Connect): /.well-known/oauth-authorization-server
  basic = await client.discovery(issuer, input.client_id, undefined, client.ClientSecretBasic(input.client_secret), { algorithm: 'oauth2' });
  post = await client.discovery(issuer, input.client_id, undefined, client.ClientSecretPost(input.client_secret), { algorithm: 'oauth2' });
  const m = basic.serverMetadata();
  return { issuer: m.issuer, introspection_endpoint: m.introspection_endpoint, revocation_endpoint: m.revocation_endpoint,
    introspection_endpoint_auth_methods_supported: m.introspection_endpoint_auth_methods_supported };
});
if (basic) {
  await step('introspect_basic', () => client.tokenIntrospection(basic, input.token));
  await step('introspect_post', () => client.tokenIntrospection(post, input.token));
  await step('revoke', async () => { await client.tokenRevocation(basic, input.token); return 'revoked'; });
  await step('introspect_after_revoke', () => client.tokenIntrospection(post, input.token));
  // a wrong secret: openid-client surfaces the RFC 6749 error
  const wrong = await client.discovery(issuer, input.client_id, undefined, client.ClientSecretBasic(input.client_secret.slice(0, -1) + (input.client_secret.endsWith('x') ? 'y' : 'x')), { algorithm: 'oauth2' });
  await step('introspect_wrong_secret', () => client.tokenIntrospection(wrong, input.token));
}
process.stdout.write(JSON.stringify(out));
