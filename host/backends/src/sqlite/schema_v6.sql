-- Schema version 6: the tokens of credentials the host holds, one per credential and subject
-- (the target the token acts for). The secret part is sealed by the host (AEAD) before it
-- gets here: `ciphertext` with its `nonce` and the `key_id` of the key that sealed it. Scopes
-- (a JSON array), expiry and the relink mark stay in clear so a refusal needs no decryption.
CREATE TABLE IF NOT EXISTS tokens (
    credential   TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    expires_at   INTEGER,
    needs_relink TEXT,
    key_id       TEXT    NOT NULL,
    nonce        BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (credential, subject)
);

PRAGMA user_version = 6;
