-- $filter lookups by value. 0001's btree indexes serve the time order, one user, one UPN and
-- the flagged sign-ins; any other property was filtered while reading the tenant's time order
-- (fine for common values, a whole-tenant scan for rare ones) or, for properties where most
-- values are rare (correlation id, IP address, device, display name), by a sequential scan of
-- the table. Help desk looks exactly those up: the correlation id a user reads out on a support
-- call, an IP address, a device, an app, an error code, a place, a risk level.
--
-- One GIN index over all of them (btree_gin supplies GIN operator classes for plain scalar
-- types), rather than a btree per property:
--   - a btree (tenant_id, property, created_at) per property would serve "newest matching
--     first" best, but fifteen more btrees would multiply the cost of every insert, and
--     ingestion must stay close to bulk-load speed (issue 4);
--   - GIN stores each distinct value once with a compressed list of rows, so one index covers
--     every property for about the size of one or two btrees, and inserts go to a pending list
--     merged in bulk (fastupdate) instead of fifteen tree descents per row;
--   - any combination of these properties is answered by intersecting the lists, and tenant_id
--     is one of the indexed columns, so a lookup intersects with the tenant's list rather than
--     visiting other tenants' rows (every index leads with tenant_id, as the schema's rule for
--     distributing by tenant asks).
-- What it costs (1,000-row inserts into 1M rows with 0001's indexes, unpartitioned, loaded
-- machine): 8-10 batches/s with it against 14 without, about a third of insert throughput. Most
-- of that is the near-unique values (correlation id, IP address, device, display name): an
-- index on random values touches a random page per row whatever its kind (a btree on
-- (tenant_id, correlation_id) alone cost more, 7 batches/s), while the other columns together
-- cost about a sixth (12 batches/s). With daily partitions the index being written is one
-- day's, small enough to stay cached, which should cost less; issue 4 measures ingestion.
-- What it cannot do: return rows in time order, so a value matching many rows is still served
-- by reading the time index and filtering, which the planner picks from the column statistics;
-- and LIKE (startswith), IS NULL and ne are not GIN operators, so those filter the time index.
-- Every column costs ingestion (GIN adds one key per column per row), so only properties
-- looked up by a value that can be rare are in. Left out: user_type and is_interactive (two
-- values, neither rare: the time index finds a page at once); browser, operating system and
-- state (a few common values; a place is looked up by city or country); and the columns 0001
-- already indexes.
--
-- A plain CREATE INDEX on the table, so on a partitioned table it cascades to every partition.
CREATE EXTENSION IF NOT EXISTS btree_gin;

CREATE INDEX sign_ins_by_value ON query.sign_ins USING gin (
    tenant_id,
    correlation_id,
    ip_address,
    device_id,
    user_display_name,
    app_id,
    app_display_name,
    resource_id,
    resource_display_name,
    error_code,
    client_app_used,
    conditional_access_status,
    risk_level_during_sign_in,
    risk_state,
    city,
    country_or_region
);
