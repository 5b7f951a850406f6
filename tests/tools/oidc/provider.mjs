// An OpenID Connect provider for Bedside's sign-in tests: panva's
// oidc-provider (npm), a certified implementation, configured with one
// confidential client (Bedside) that must use PKCE, and test accounts.
// Its development interactions (a login form that accepts any password for
// a known account, then a consent form) stand in for a real IdP's pages.
//
//   node provider.mjs PORT REDIRECT_URI
// with OIDC_ACCOUNTS (JSON: {login: {email, name, groups}}) and optionally
// OIDC_ID_TOKEN_ALG (default RS256). Prints "ready" when listening.
import Provider from 'oidc-provider';

const [port, redirectUri] = process.argv.slice(2);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');
const alg = process.env.OIDC_ID_TOKEN_ALG || 'RS256';

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: 'bedside',
      client_secret: 'bedside-test-secret',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    },
  ],
  pkce: { required: () => true },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  // The claims go into the ID token itself, not only the userinfo endpoint.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  async findAccount(_ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email_verified: true, ...account };
      },
    };
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'EdDSA'] },
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1', () => {
  console.log('ready');
});
