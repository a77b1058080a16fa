// Verifies IAM access tokens with `jose` (an independent JOSE implementation), given only
// the JWKS URL. Usage: node verify.mjs JWKS_URL ISSUER AUDIENCE TOKEN...
// Prints one JSON line per token; exits non-zero on the first token that does not verify.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience, ...tokens] = process.argv.slice(2);
const keys = createRemoteJWKSet(new URL(jwksUrl), { cooldownDuration: 0 });
for (const token of tokens) {
  const { payload, protectedHeader } = await jwtVerify(token, keys, {
    issuer,
    audience,
    typ: 'at+jwt',
    algorithms: ['RS256'],
    // RFC 9068 §2.2 requires client_id in every access token.
    requiredClaims: ['sub', 'exp', 'iat', 'nbf', 'jti', 'client_id'],
  });
  console.log(JSON.stringify({ kid: protectedHeader.kid, sub: payload.sub, role: payload.role, client_id: payload.client_id }));
}
