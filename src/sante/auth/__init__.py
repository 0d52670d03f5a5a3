"""Identity and security: users, roles, scopes and tokens; the hospital certificate authority and
practitioners' signing keys (sante.auth.ca); compact JWS signatures (sante.auth.jws)."""
