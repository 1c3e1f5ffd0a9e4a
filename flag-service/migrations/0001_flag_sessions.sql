-- Flag sessions, kept as history so "was this flag key flagged at time t?" has one answer
-- for any t. A session is in force over [enabled_at, LEAST(expires_at, disabled_at)).
CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE flag.flag_sessions (
    tenant_id               uuid        NOT NULL,
    id                      uuid        NOT NULL,
    user_id                 uuid        NOT NULL,
    -- '' when the client device is not registered; part of the flag key either way.
    device_id               text        NOT NULL,
    browser_id              text        NOT NULL,
    user_principal_name     text,
    enabled_at              timestamptz NOT NULL,
    expires_at              timestamptz NOT NULL,
    disabled_at             timestamptz,
    enabled_by              text        NOT NULL,
    disabled_by             text,
    trigger_error_code      integer,
    trigger_request_id      text,
    trigger_correlation_id  text,
    trigger_app_id          text,
    trigger_app_display_name text,
    trigger_ip_address      text,
    trigger_occurred_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    CHECK (expires_at > enabled_at),
    CHECK (disabled_at IS NULL OR disabled_at >= enabled_at),
    -- One session in force per flag key at any instant, whatever the number of replicas.
    CONSTRAINT one_session_in_force_per_flag_key EXCLUDE USING gist (
        tenant_id WITH =, user_id WITH =, device_id WITH =, browser_id WITH =,
        tstzrange(enabled_at, LEAST(expires_at, COALESCE(disabled_at, expires_at)), '[)') WITH &&
    )
);

-- Status and CheckFlags: the sessions of one flag key, newest first.
CREATE INDEX flag_sessions_by_key ON flag.flag_sessions
    (tenant_id, user_id, device_id, browser_id, enabled_at DESC);
-- ListFlagSessions and the per-user rate limit.
CREATE INDEX flag_sessions_by_tenant ON flag.flag_sessions (tenant_id, enabled_at DESC, id DESC);
CREATE INDEX flag_sessions_by_user ON flag.flag_sessions (tenant_id, user_id, enabled_at DESC, id DESC);
-- Retention deletes sessions that ended long ago.
CREATE INDEX flag_sessions_by_expiry ON flag.flag_sessions (expires_at);
