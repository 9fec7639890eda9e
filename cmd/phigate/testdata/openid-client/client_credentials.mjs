// The stock openid-client 6 doing a SMART Backend Services
// client-credentials grant with private_key_jwt against phigate.
//
// Input (environment): PHIGATE_ADDR (https://host:port of the admin API),
// CLIENT_ID, CLIENT_JWK (the client's P-384 private key as a JWK, generated
// at run time by the Go test; its kid names it), SCOPE (space separated).
// The server's certificate is trusted through NODE_EXTRA_CA_CERTS.
// The metadata comes from discovery (/.well-known/oauth-authorization-server),
// and the assertion's aud is the token endpoint it names.
//
// openid-client signs with the key's algorithm (ES384 for a P-384 key) and
// puts the issuer in aud; SMART Backend Services (and phigate) want the
// token endpoint there, which the stock modifyAssertion hook sets.
//
// Output: one JSON line, the token endpoint's answer.
import * as client from 'openid-client';

const addr = process.env.PHIGATE_ADDR;
const clientId = process.env.CLIENT_ID;
const jwk = JSON.parse(process.env.CLIENT_JWK);
let tokenEndpoint; // from the discovered metadata

const key = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDSA', namedCurve: 'P-384' }, false, ['sign']);
const auth = client.PrivateKeyJwt({ key, kid: jwk.kid }, {
  [client.modifyAssertion]: (header, payload) => {
    if (header.alg !== 'ES384') throw new Error(`openid-client chose ${header.alg}, want ES384`);
    payload.aud = tokenEndpoint;
  },
});

const config = await client.discovery(new URL(addr), clientId, undefined, auth, { algorithm: 'oauth2' }); // RFC 8414, not OpenID discovery
tokenEndpoint = config.serverMetadata().token_endpoint;
if (!tokenEndpoint) throw new Error('the discovered metadata names no token_endpoint');

const params = {};
if (process.env.SCOPE) params.scope = process.env.SCOPE;
const tokens = await client.clientCredentialsGrant(config, params);
process.stdout.write(JSON.stringify({
  access_token: tokens.access_token,
  token_type: tokens.token_type,
  expires_in: tokens.expires_in,
  scope: tokens.scope,
}) + '\n');
