-- The sign-in log, partitioned by day on created_at so that retention drops whole partitions
-- (query-service creates them ahead, and on demand for late events). Every key and index leads
-- with tenant_id so the table distributes by tenant. Text columns use the "C" collation:
-- comparisons are byte-wise and case-sensitive, as Graph's are, and filters evaluated in
-- memory (WatchSignIns) agree with SQL.
CREATE TABLE query.sign_ins (
    tenant_id                   uuid        NOT NULL,
    id                          uuid        NOT NULL,
    created_at                  timestamptz NOT NULL,
    user_id                     uuid        NOT NULL,
    user_principal_name         text COLLATE "C",
    user_display_name           text COLLATE "C",
    user_type                   text COLLATE "C",
    app_id                      text COLLATE "C",
    app_display_name            text COLLATE "C",
    resource_id                 text COLLATE "C",
    resource_display_name       text COLLATE "C",
    ip_address                  text COLLATE "C",
    user_agent                  text COLLATE "C",
    client_app_used             text COLLATE "C",
    correlation_id              text COLLATE "C",
    is_interactive              boolean,
    conditional_access_status   text COLLATE "C",
    error_code                  integer     NOT NULL,
    failure_reason              text COLLATE "C",
    additional_details          text COLLATE "C",
    device_id                   text COLLATE "C",
    browser_id                  text COLLATE "C",
    device_display_name         text COLLATE "C",
    operating_system            text COLLATE "C",
    browser                     text COLLATE "C",
    is_compliant                boolean,
    is_managed                  boolean,
    trust_type                  text COLLATE "C",
    city                        text COLLATE "C",
    state                       text COLLATE "C",
    country_or_region           text COLLATE "C",
    risk_level_during_sign_in   text COLLATE "C",
    risk_state                  text COLLATE "C",
    -- Set by the service from flag-service, never by the gateway.
    flagged_for_review          boolean     NOT NULL,
    flag_session_id             uuid,
    flag_check_pending          boolean     NOT NULL,
    recorded_at                 timestamptz NOT NULL DEFAULT now(),
    -- Idempotency: a gateway's retry of an event (same tenant, time and id) is stored once.
    -- A partitioned table's keys must hold the partition key, hence created_at.
    PRIMARY KEY (tenant_id, created_at, id)
) PARTITION BY RANGE (created_at);

-- GetSignIn: one sign-in by id, whatever its day.
CREATE INDEX sign_ins_by_id ON query.sign_ins (tenant_id, id);

-- The tenant's log, newest (or oldest) first, and keyset paging on (created_at, id), are served
-- by the primary key itself (scanned backwards for newest first).
-- One user's sign-ins ("newest 50 of one user", a user's own page).
CREATE INDEX sign_ins_by_user ON query.sign_ins (tenant_id, user_id, created_at DESC, id DESC);
-- Flagged sign-ins only: the product's main query and everything help desk reads.
CREATE INDEX sign_ins_flagged ON query.sign_ins (tenant_id, created_at DESC, id DESC)
    WHERE flagged_for_review;
CREATE INDEX sign_ins_flagged_by_upn ON query.sign_ins (tenant_id, user_principal_name, created_at DESC, id DESC)
    WHERE flagged_for_review;
CREATE INDEX sign_ins_by_upn ON query.sign_ins (tenant_id, user_principal_name, created_at DESC, id DESC);
-- The background re-check of events recorded while flag-service was unreachable.
CREATE INDEX sign_ins_flag_check_pending ON query.sign_ins (recorded_at) WHERE flag_check_pending;
