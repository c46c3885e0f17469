"""What the parts share: OAuth errors, JOSE helpers, token-type constants, response mapping."""
