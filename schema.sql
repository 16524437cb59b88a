-- Canonical Postgres DDL of the dialer. Idempotent: `dialer db init` applies it to an existing database.
-- campaigns/models.py mirrors these tables; tests/test_schema_parity.py fails on any difference.

CREATE TABLE IF NOT EXISTS provider_account (
    id                      BIGSERIAL PRIMARY KEY,
    name                    TEXT NOT NULL,
    provider                TEXT NOT NULL
        CHECK (provider IN ('plivo', 'vobiz', 'tryvox', 'voipbin', 'bandwidth')),
    auth_id                 TEXT NOT NULL,
    auth_token_encrypted    TEXT NOT NULL,           -- Fernet token under DIALER_SECRET_KEY
    webhook_secret_encrypted TEXT,                   -- VoIPbin webhook HMAC secret, if the customer set one
    base_url                TEXT NOT NULL,
    cps                     DOUBLE PRECISION NOT NULL CHECK (cps > 0),
    max_concurrent          INTEGER NOT NULL CHECK (max_concurrent > 0),
    options                 JSONB NOT NULL DEFAULT '{}'::jsonb,  -- e.g. Bandwidth applicationId
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT provider_account_name_key UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS campaign (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL,
    account_id          BIGINT REFERENCES provider_account (id),
    caller_id           TEXT,
    answer_url          TEXT,
    provider_options    JSONB NOT NULL DEFAULT '{}'::jsonb,   -- ring_timeout, time_limit, machine_detection…
    cps                 DOUBLE PRECISION CHECK (cps > 0),     -- the campaign's own cap, under the account's
    max_concurrent      INTEGER CHECK (max_concurrent > 0),
    weight              INTEGER NOT NULL DEFAULT 1 CHECK (weight > 0),
    default_region      TEXT NOT NULL DEFAULT 'US',
    start_at            TIMESTAMPTZ,
    end_at              TIMESTAMPTZ,
    window_start        TIME NOT NULL DEFAULT '09:00',        -- local time of the destination
    window_end          TIME NOT NULL DEFAULT '21:00',
    window_days         SMALLINT[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}',  -- ISO weekdays, 1 = Monday
    timezone_override   TEXT,                                 -- NULL: each destination's own zone
    retry_policy        JSONB NOT NULL DEFAULT '{}'::jsonb,   -- outcome -> {delay_s, max_attempts}
    state               TEXT NOT NULL DEFAULT 'loading'
        CHECK (state IN ('loading', 'draft', 'running', 'paused', 'completed', 'cancelled')),
    state_reason        TEXT,
    rows_total          INTEGER NOT NULL DEFAULT 0,
    rows_loaded         INTEGER NOT NULL DEFAULT 0,
    rows_rejected       INTEGER NOT NULL DEFAULT 0,
    throttled_count     BIGINT NOT NULL DEFAULT 0,            -- 429s met while dialing (not attempts)
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS campaign_state_idx ON campaign (state);

CREATE TABLE IF NOT EXISTS destination (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    line_no             INTEGER NOT NULL,
    number              TEXT NOT NULL,                        -- E.164 or sip: URI
    variables           JSONB NOT NULL DEFAULT '{}'::jsonb,
    timezone            TEXT NOT NULL,
    status              TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'queued', 'dialing', 'ringing', 'answered', 'done', 'retry_wait',
                          'failed', 'invalid', 'dnc', 'cancelled', 'expired', 'unknown')),
    attempts_made       INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TIMESTAMPTZ,
    outcome             TEXT,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT destination_campaign_id_number_key UNIQUE (campaign_id, number)
);
-- The dispatcher's claim query: due destinations of one campaign, oldest first.
CREATE INDEX IF NOT EXISTS destination_due_idx ON destination (campaign_id, next_attempt_at, id)
    WHERE status IN ('pending', 'retry_wait', 'queued');
CREATE INDEX IF NOT EXISTS destination_status_idx ON destination (campaign_id, status);

CREATE TABLE IF NOT EXISTS call_attempt (
    id                  BIGSERIAL PRIMARY KEY,
    destination_id      BIGINT NOT NULL REFERENCES destination (id) ON DELETE CASCADE,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    account_id          BIGINT NOT NULL REFERENCES provider_account (id),
    attempt_no          INTEGER NOT NULL,
    batch_id            UUID,                                 -- one per provider request (bulk or not)
    status              TEXT NOT NULL DEFAULT 'dialing'
        CHECK (status IN ('dialing', 'sent', 'ringing', 'answered', 'completed', 'failed', 'unknown')),
    request_uuid        TEXT,
    call_uuid           TEXT,
    provider_status     TEXT,
    outcome             TEXT
        CHECK (outcome IN ('answered', 'busy', 'no_answer', 'failed', 'rejected', 'machine',
                           'cancelled', 'unknown')),
    hangup_cause        TEXT,
    error_message       TEXT,
    cost                NUMERIC,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at             TIMESTAMPTZ,
    ring_at             TIMESTAMPTZ,
    answer_at           TIMESTAMPTZ,
    end_at              TIMESTAMPTZ,
    duration            INTEGER,
    billed_duration     INTEGER,
    lease_expires_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT call_attempt_destination_id_attempt_no_key UNIQUE (destination_id, attempt_no)
);
CREATE INDEX IF NOT EXISTS call_attempt_request_uuid_idx ON call_attempt (request_uuid);
CREATE INDEX IF NOT EXISTS call_attempt_call_uuid_idx ON call_attempt (call_uuid);
CREATE INDEX IF NOT EXISTS call_attempt_batch_idx ON call_attempt (batch_id);
CREATE INDEX IF NOT EXISTS call_attempt_open_lease_idx ON call_attempt (lease_expires_at)
    WHERE status IN ('dialing', 'sent', 'ringing', 'answered');

CREATE TABLE IF NOT EXISTS call_event (
    id                  BIGSERIAL PRIMARY KEY,
    provider            TEXT NOT NULL,
    account_id          BIGINT REFERENCES provider_account (id),
    event_key           TEXT NOT NULL,                        -- provider's identity of this event
    kind                TEXT NOT NULL,                        -- ring, answer, machine, hangup, status
    batch_id            UUID,
    request_uuid        TEXT,
    call_uuid           TEXT,
    destination         TEXT,
    payload             JSONB NOT NULL,
    headers             JSONB NOT NULL DEFAULT '{}'::jsonb,
    received_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_at          TIMESTAMPTZ,
    attempt_id          BIGINT REFERENCES call_attempt (id) ON DELETE SET NULL,
    rejected_reason     TEXT,                                 -- set when the applier could not apply it
    -- Scoped to the account that authenticated it: another account's credentials cannot pre-empt it.
    CONSTRAINT call_event_account_event_key UNIQUE (provider, account_id, event_key)
);
CREATE INDEX IF NOT EXISTS call_event_unapplied_idx ON call_event (received_at) WHERE applied_at IS NULL;
-- Early events (stored before the dialer recorded their ids) are found by id when the ids arrive.
CREATE INDEX IF NOT EXISTS call_event_unapplied_request_idx ON call_event (request_uuid) WHERE applied_at IS NULL;
CREATE INDEX IF NOT EXISTS call_event_unapplied_call_idx ON call_event (call_uuid) WHERE applied_at IS NULL;
-- The foreign key's ON DELETE SET NULL: an attempt undone before its request (no tokens in time, a 429)
-- is deleted, and without this index each delete scans every event ever stored.
CREATE INDEX IF NOT EXISTS call_event_attempt_idx ON call_event (attempt_id);

-- Databases made before the event key was scoped to the account (additive: add, then drop the old one).
ALTER TABLE call_event ADD COLUMN IF NOT EXISTS rejected_reason TEXT;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'call_event_account_event_key') THEN
        ALTER TABLE call_event ADD CONSTRAINT call_event_account_event_key
            UNIQUE (provider, account_id, event_key);
    END IF;
END $$;
ALTER TABLE call_event DROP CONSTRAINT IF EXISTS call_event_provider_event_key_key;

-- Authenticated callbacks that could not be understood (missing ids, values out of range), kept raw with the
-- reason for an operator; never applied.
CREATE TABLE IF NOT EXISTS rejected_callback (
    id                  BIGSERIAL PRIMARY KEY,
    provider            TEXT NOT NULL,
    account_id          BIGINT REFERENCES provider_account (id) ON DELETE CASCADE,
    kind                TEXT NOT NULL,
    reason              TEXT NOT NULL,
    body                TEXT NOT NULL,
    headers             JSONB NOT NULL DEFAULT '{}'::jsonb,
    received_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS rejected_callback_received_idx ON rejected_callback (account_id, received_at);
-- How many of an account's callbacks were refused as malformed in each clock hour (issue 20 item 9): past
-- DIALER_REJECTED_CALLBACKS_PER_HOUR of them only this count grows, and nothing of the callback is kept.
CREATE TABLE IF NOT EXISTS rejected_callback_hour (
    account_id          BIGINT NOT NULL REFERENCES provider_account (id) ON DELETE CASCADE,
    hour                TIMESTAMPTZ NOT NULL,                 -- date_trunc('hour', received)
    received            INTEGER NOT NULL DEFAULT 0,           -- refused in that hour, kept or not
    PRIMARY KEY (account_id, hour)
);

-- The request ids a bulk answer gave (Plivo/Vobiz list them with no order). Where the carrier can be asked about
-- a bare request id (Vobiz: request_uuid is the call_uuid), the reaper looks each one up when every callback
-- of the bulk was lost, and maps the answers back to destinations by their numbers.
CREATE TABLE IF NOT EXISTS provider_batch (
    batch_id            UUID PRIMARY KEY,                     -- call_attempt.batch_id of the request
    account_id          BIGINT NOT NULL REFERENCES provider_account (id) ON DELETE CASCADE,
    request_uuids       TEXT[] NOT NULL,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS provider_batch_created_idx ON provider_batch (created_at);

CREATE TABLE IF NOT EXISTS dnc_number (
    number              TEXT PRIMARY KEY,                     -- E.164; the global do-not-call list
    reason              TEXT,
    added_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Issue 12: do-not-call lists per account (an opt-out keypress lands here), beside the global list above.
CREATE TABLE IF NOT EXISTS account_dnc_number (
    account_id          BIGINT NOT NULL REFERENCES provider_account (id) ON DELETE CASCADE,
    number              TEXT NOT NULL,                        -- E.164
    reason              TEXT,
    source              TEXT NOT NULL DEFAULT 'operator',     -- operator, import, keypress, api
    added_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT account_dnc_number_pkey PRIMARY KEY (account_id, number)
);
CREATE INDEX IF NOT EXISTS account_dnc_number_number_idx ON account_dnc_number (number);

-- Issue 12: frequency caps across campaigns, per account (NULL: no cap), and the opt-out on the attempt.
ALTER TABLE provider_account ADD COLUMN IF NOT EXISTS max_attempts_per_number_day INTEGER
    CHECK (max_attempts_per_number_day > 0);
ALTER TABLE provider_account ADD COLUMN IF NOT EXISTS max_attempts_per_number_week INTEGER
    CHECK (max_attempts_per_number_week > 0);
ALTER TABLE call_attempt ADD COLUMN IF NOT EXISTS opt_out_digits TEXT;   -- what the callee pressed
ALTER TABLE call_attempt ADD COLUMN IF NOT EXISTS opted_out_at TIMESTAMPTZ;
-- The frequency-cap count: an account's attempts on one number, across its campaigns.
CREATE INDEX IF NOT EXISTS destination_number_idx ON destination (number);
CREATE INDEX IF NOT EXISTS call_attempt_account_created_idx ON call_attempt (account_id, created_at);

CREATE TABLE IF NOT EXISTS rejected_row (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    line_no             INTEGER NOT NULL,
    raw_value           TEXT NOT NULL,
    reason              TEXT NOT NULL,
    detail              TEXT
);
CREATE INDEX IF NOT EXISTS rejected_row_campaign_idx ON rejected_row (campaign_id, line_no);

CREATE TABLE IF NOT EXISTS api_key (
    id                  BIGSERIAL PRIMARY KEY,
    name                TEXT NOT NULL,
    key_hash            TEXT NOT NULL,                        -- sha256 hex of the key; the key is shown once
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at          TIMESTAMPTZ,
    CONSTRAINT api_key_key_hash_key UNIQUE (key_hash)
);

-- Issue 20: a key's scope. Keys made before scopes could do everything, so they become admin (the column's
-- default fills them in once); the default is dropped after, so every new key names its role.
ALTER TABLE api_key ADD COLUMN IF NOT EXISTS role TEXT NOT NULL DEFAULT 'admin'
    CHECK (role IN ('admin', 'operator', 'viewer'));
ALTER TABLE api_key ALTER COLUMN role DROP DEFAULT;
-- The provider accounts an operator or viewer key may reach (an admin key reaches all and lists none).
CREATE TABLE IF NOT EXISTS api_key_account (
    api_key_id          BIGINT NOT NULL REFERENCES api_key (id) ON DELETE CASCADE,
    account_id          BIGINT NOT NULL REFERENCES provider_account (id) ON DELETE CASCADE,
    CONSTRAINT api_key_account_pkey PRIMARY KEY (api_key_id, account_id)
);
CREATE INDEX IF NOT EXISTS api_key_account_account_idx ON api_key_account (account_id);

-- What the Redis budgets must not forget if Redis loses its state (workers.ratelimit.recovery): the last
-- Retry-After pause and the AIMD rate lowered after 429s. Live calls are rebuilt from open attempts.
CREATE TABLE IF NOT EXISTS account_budget_state (
    account_id          BIGINT PRIMARY KEY REFERENCES provider_account (id) ON DELETE CASCADE,
    adaptive_cps        DOUBLE PRECISION,                     -- NULL: back at the configured CPS
    paused_until        TIMESTAMPTZ,                          -- end of the last Retry-After pause
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every campaign load's rows and time, whichever way it came (CLI, API, console), added in the load's own
-- transaction; the API's /metrics exports them (dialer_loader_rows_total, dialer_loader_seconds_total).
CREATE TABLE IF NOT EXISTS loader_tally (
    singleton           BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    rows_read           BIGINT NOT NULL DEFAULT 0,
    seconds             DOUBLE PRECISION NOT NULL DEFAULT 0
);

-- Runs, schedules, blackouts and spoken text (issue 12). Additive, so an existing database takes them with
-- `dialer db init`: new tables, and new columns with defaults on the tables above.
-- A destination belongs to one run's cycle at a time: `run_no` is the run it was last taken into and
-- `attempts_before_run` its attempt count when that run began (the retry policy counts from there).
ALTER TABLE destination ADD COLUMN IF NOT EXISTS run_no INTEGER NOT NULL DEFAULT 1;
ALTER TABLE destination ADD COLUMN IF NOT EXISTS attempts_before_run INTEGER NOT NULL DEFAULT 0;
ALTER TABLE call_attempt ADD COLUMN IF NOT EXISTS run_no INTEGER NOT NULL DEFAULT 1;
ALTER TABLE call_attempt ADD COLUMN IF NOT EXISTS spoken_text TEXT;   -- the message as rendered for this call
-- Public holidays of each destination's own country, and the campaign's own dates, are not called.
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS observe_holidays BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS blackout_dates DATE[] NOT NULL DEFAULT '{}';
-- The uploaded file's columns in its order, so results show each row's own columns first (issue 22).
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS input_columns TEXT[] NOT NULL DEFAULT '{}';

CREATE TABLE IF NOT EXISTS campaign_run (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    run_no              INTEGER NOT NULL,
    trigger             TEXT NOT NULL CHECK (trigger IN ('start', 'schedule', 'rerun')),
    only_outcomes       TEXT[],                               -- NULL: the whole list afresh
    destinations        INTEGER NOT NULL DEFAULT 0,           -- taken into this run when it began
    started_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    ends_at             TIMESTAMPTZ,                          -- undialed destinations expire then
    finished_at         TIMESTAMPTZ,
    finish_reason       TEXT,
    CONSTRAINT campaign_run_campaign_id_run_no_key UNIQUE (campaign_id, run_no)
);
CREATE INDEX IF NOT EXISTS campaign_run_open_idx ON campaign_run (campaign_id) WHERE finished_at IS NULL;

CREATE TABLE IF NOT EXISTS campaign_schedule (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    cron                TEXT NOT NULL,                        -- five fields, read by croniter
    timezone            TEXT NOT NULL,                        -- the zone the cron fields are read in
    only_outcomes       TEXT[],                               -- NULL: each run dials the whole list
    run_for_s           INTEGER CHECK (run_for_s > 0),        -- NULL: a run may last until the next firing
    until_at            TIMESTAMPTZ,                          -- no run starts after this
    next_run_at         TIMESTAMPTZ,                          -- NULL: the schedule has no more firings
    enabled             BOOLEAN NOT NULL DEFAULT true,
    last_note           TEXT,                                 -- why the last firing did or did not start a run
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT campaign_schedule_campaign_id_key UNIQUE (campaign_id)
);
CREATE INDEX IF NOT EXISTS campaign_schedule_due_idx ON campaign_schedule (next_run_at) WHERE enabled;

-- Load-time warnings that do not refuse a row (a template variable the row has no column for).
CREATE TABLE IF NOT EXISTS load_warning (
    id                  BIGSERIAL PRIMARY KEY,
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    line_no             INTEGER NOT NULL,
    reason              TEXT NOT NULL,
    detail              TEXT
);
CREATE INDEX IF NOT EXISTS load_warning_campaign_idx ON load_warning (campaign_id, line_no);

-- Archived campaigns (issue 22): hidden from lists, results kept; an account used only by archived campaigns
-- can be removed, which clears their account (its name stays in archived_account) and their attempts' link.
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS archived_at TIMESTAMPTZ;
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS archived_account TEXT;
ALTER TABLE call_attempt ALTER COLUMN account_id DROP NOT NULL;

-- Issue 22: outbound webhooks. An endpoint belongs to an account or to a campaign; a campaign's own endpoint
-- replaces its account's for that campaign. The outbox (webhook_delivery) gets one row per event and endpoint,
-- written by the triggers below inside the very transaction that makes the state change, whichever module
-- makes it; workers.housekeeping.webhook_delivery sends them (docs/DESIGN.md, "Outbound webhooks").
CREATE TABLE IF NOT EXISTS webhook_endpoint (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          BIGINT REFERENCES provider_account (id) ON DELETE CASCADE,
    campaign_id         BIGINT REFERENCES campaign (id) ON DELETE CASCADE,
    url                 TEXT NOT NULL,
    secret_encrypted    TEXT NOT NULL,                        -- whsec_… under DIALER_SECRET_KEY, shown once
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoint_account_id_key UNIQUE (account_id),
    CONSTRAINT webhook_endpoint_campaign_id_key UNIQUE (campaign_id),
    CONSTRAINT webhook_endpoint_one_owner CHECK ((account_id IS NULL) <> (campaign_id IS NULL))
);
CREATE TABLE IF NOT EXISTS webhook_delivery (
    id                  BIGSERIAL PRIMARY KEY,
    endpoint_id         BIGINT NOT NULL REFERENCES webhook_endpoint (id) ON DELETE CASCADE,
    message_id          TEXT NOT NULL,                        -- the webhook-id header: the idempotency key
    event_type          TEXT NOT NULL,
    campaign_id         BIGINT,                               -- no foreign key: the outbox never locks a campaign
    order_key           TEXT NOT NULL,                        -- 'd<destination id>', 'c<campaign id>', 'a<account id>'
    payload             JSONB NOT NULL,
    state               TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     TIMESTAMPTZ NOT NULL DEFAULT now(),   -- also the lease of a send in flight
    last_status         INTEGER,                              -- the receiver's HTTP status, NULL if none came
    last_error          TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,                          -- delivered or given up
    CONSTRAINT webhook_delivery_message_id_key UNIQUE (message_id)
);
-- The head of each (endpoint, order key) queue, and what is due.
CREATE INDEX IF NOT EXISTS webhook_delivery_queue_idx ON webhook_delivery (endpoint_id, order_key, id)
    WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_delivery_due_idx ON webhook_delivery (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS webhook_delivery_campaign_idx ON webhook_delivery (campaign_id, id);
CREATE INDEX IF NOT EXISTS webhook_delivery_finished_idx ON webhook_delivery (finished_at)
    WHERE state = 'delivered';

-- The endpoint an event of this campaign goes to: the campaign's own, else its account's; NULL: none.
CREATE OR REPLACE FUNCTION webhook_endpoint_for(p_campaign BIGINT) RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT e.id FROM webhook_endpoint e
    WHERE e.campaign_id = p_campaign
       OR e.account_id = (SELECT c.account_id FROM campaign c WHERE c.id = p_campaign)
    ORDER BY e.campaign_id IS NULL LIMIT 1
$$;

CREATE OR REPLACE FUNCTION webhook_record(p_endpoint BIGINT, p_campaign BIGINT, p_type TEXT, p_key TEXT,
                                          p_data JSONB) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO webhook_delivery (endpoint_id, message_id, event_type, campaign_id, order_key, payload)
    VALUES (p_endpoint, 'msg_' || replace(gen_random_uuid()::text, '-', ''), p_type, p_campaign, p_key,
            jsonb_build_object('type', p_type,
                               'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC',
                                                    'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                               'data', p_data))
$$;

CREATE OR REPLACE FUNCTION webhook_attempt_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE endpoint BIGINT := webhook_endpoint_for(NEW.campaign_id);
BEGIN
    IF endpoint IS NOT NULL THEN
        PERFORM webhook_record(endpoint, NEW.campaign_id, 'attempt.finished', 'd' || NEW.destination_id,
            jsonb_build_object(
                'campaign_id', NEW.campaign_id, 'run_no', NEW.run_no, 'destination_id', NEW.destination_id,
                'number', (SELECT d.number FROM destination d WHERE d.id = NEW.destination_id),
                'attempt_id', NEW.id, 'attempt_no', NEW.attempt_no, 'status', NEW.status,
                'outcome', NEW.outcome, 'provider_status', NEW.provider_status,
                'hangup_cause', NEW.hangup_cause, 'error', NEW.error_message, 'call_uuid', NEW.call_uuid,
                'sent_at', NEW.sent_at, 'answer_at', NEW.answer_at, 'end_at', NEW.end_at,
                'duration', NEW.duration, 'billed_duration', NEW.billed_duration));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_destination_final() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE endpoint BIGINT := webhook_endpoint_for(NEW.campaign_id);
BEGIN
    IF endpoint IS NOT NULL THEN
        PERFORM webhook_record(endpoint, NEW.campaign_id, 'destination.final', 'd' || NEW.id,
            jsonb_build_object(
                'campaign_id', NEW.campaign_id, 'run_no', NEW.run_no, 'destination_id', NEW.id,
                'line_no', NEW.line_no, 'number', NEW.number, 'status', NEW.status, 'outcome', NEW.outcome,
                'attempts', NEW.attempts_made, 'variables', NEW.variables));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE endpoint BIGINT := webhook_endpoint_for(NEW.campaign_id);
BEGIN
    IF endpoint IS NOT NULL THEN
        PERFORM webhook_record(endpoint, NEW.campaign_id,
            CASE WHEN TG_OP = 'INSERT' THEN 'run.started' ELSE 'run.finished' END, 'c' || NEW.campaign_id,
            jsonb_build_object(
                'campaign_id', NEW.campaign_id, 'run_no', NEW.run_no, 'trigger', NEW.trigger,
                'only_outcomes', NEW.only_outcomes, 'destinations', NEW.destinations,
                'started_at', NEW.started_at, 'ends_at', NEW.ends_at, 'finished_at', NEW.finished_at,
                'finish_reason', NEW.finish_reason));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION webhook_campaign_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE endpoint BIGINT := webhook_endpoint_for(NEW.id);
BEGIN
    IF endpoint IS NOT NULL THEN
        PERFORM webhook_record(endpoint, NEW.id,
            CASE WHEN NEW.state = 'completed' THEN 'campaign.completed' ELSE 'campaign.paused' END,
            'c' || NEW.id,
            jsonb_build_object(
                'campaign_id', NEW.id, 'name', NEW.name, 'state', NEW.state, 'reason', NEW.state_reason,
                'destinations', (SELECT coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
                                 FROM (SELECT d.status, count(*) AS n FROM destination d
                                       WHERE d.campaign_id = NEW.id GROUP BY d.status) s)));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER webhook_attempt_finished AFTER UPDATE OF status ON call_attempt FOR EACH ROW
    WHEN (NEW.status IN ('completed', 'failed', 'unknown') AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION webhook_attempt_finished();
CREATE OR REPLACE TRIGGER webhook_destination_final AFTER UPDATE OF status ON destination FOR EACH ROW
    WHEN (NEW.status IN ('done', 'failed', 'invalid', 'dnc', 'cancelled', 'expired', 'unknown')
          AND NEW.status IS DISTINCT FROM OLD.status)
    EXECUTE FUNCTION webhook_destination_final();
CREATE OR REPLACE TRIGGER webhook_run_started AFTER INSERT ON campaign_run FOR EACH ROW
    EXECUTE FUNCTION webhook_run_changed();
CREATE OR REPLACE TRIGGER webhook_run_finished AFTER UPDATE OF finished_at ON campaign_run FOR EACH ROW
    WHEN (OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL)
    EXECUTE FUNCTION webhook_run_changed();
-- Completed, or paused by a provider error (campaigns.store.dial_store.pause_account_campaigns: bad
-- credentials, balance, an unreadable token); an operator's pause (campaigns.control.pause) is no event.
CREATE OR REPLACE TRIGGER webhook_campaign_changed AFTER UPDATE OF state ON campaign FOR EACH ROW
    WHEN (NEW.state IS DISTINCT FROM OLD.state AND (NEW.state = 'completed'
          OR (NEW.state = 'paused' AND NEW.state_reason IS DISTINCT FROM 'paused by operator')))
    EXECUTE FUNCTION webhook_campaign_changed();

-- Issue 23: failover and pooling. A campaign's primary account stays campaign.account_id; its fallbacks follow
-- in order here, each with its own caller id or the campaign's (NULL). `routing` says how attempts spread:
-- 'failover' (the first account whose circuit is closed) or 'split' (every closed account, each at its CPS).
ALTER TABLE campaign ADD COLUMN IF NOT EXISTS routing TEXT NOT NULL DEFAULT 'failover'
    CHECK (routing IN ('failover', 'split'));
CREATE TABLE IF NOT EXISTS campaign_fallback_account (
    campaign_id         BIGINT NOT NULL REFERENCES campaign (id) ON DELETE CASCADE,
    position            SMALLINT NOT NULL CHECK (position > 0),   -- 1 is the first fallback
    account_id          BIGINT NOT NULL REFERENCES provider_account (id),
    caller_id           TEXT,                                     -- NULL: the campaign's caller_id
    CONSTRAINT campaign_fallback_account_pkey PRIMARY KEY (campaign_id, position),
    CONSTRAINT campaign_fallback_account_account_key UNIQUE (campaign_id, account_id)
);
CREATE INDEX IF NOT EXISTS campaign_fallback_account_account_idx ON campaign_fallback_account (account_id);
-- The account a destination's current claim is for (the dispatcher sets it with the claim), so each account's
-- back-pressure counts only its own queued work when several accounts dial one campaign.
ALTER TABLE destination ADD COLUMN IF NOT EXISTS claim_account_id BIGINT;

-- Each account's circuit breaker (campaigns.circuits). No row: closed. `retry_at`: open, when it goes
-- half-open (NULL: only an operator's `dialer account enable`); half-open, when unanswered probes are issued
-- again. The truth lives here, not in Redis: a Redis that loses its state closes no open circuit.
CREATE TABLE IF NOT EXISTS account_circuit (
    account_id          BIGINT PRIMARY KEY REFERENCES provider_account (id) ON DELETE CASCADE,
    state               TEXT NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    cause               TEXT,                                 -- campaigns.circuit_rules.Cause
    reason              TEXT,                                 -- what the carrier said, for operators
    changed_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    retry_at            TIMESTAMPTZ,
    opened_in_a_row     INTEGER NOT NULL DEFAULT 0,           -- opens since it last closed: the cool-down grows
    probes_claimed      INTEGER NOT NULL DEFAULT 0,           -- half-open: destinations sent to probe it
    probes_passed       INTEGER NOT NULL DEFAULT 0
);
-- Every change of a circuit's state, written by the trigger below in the change's own transaction.
CREATE TABLE IF NOT EXISTS account_circuit_change (
    id                  BIGSERIAL PRIMARY KEY,
    account_id          BIGINT NOT NULL REFERENCES provider_account (id) ON DELETE CASCADE,
    state               TEXT NOT NULL,
    cause               TEXT,
    reason              TEXT,
    changed_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS account_circuit_change_account_idx ON account_circuit_change (account_id, id);

CREATE OR REPLACE FUNCTION account_circuit_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO account_circuit_change (account_id, state, cause, reason, changed_at)
    VALUES (NEW.account_id, NEW.state, NEW.cause, NEW.reason, NEW.changed_at);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER account_circuit_inserted AFTER INSERT ON account_circuit FOR EACH ROW
    EXECUTE FUNCTION account_circuit_changed();
CREATE OR REPLACE TRIGGER account_circuit_changed AFTER UPDATE OF state ON account_circuit FOR EACH ROW
    WHEN (NEW.state IS DISTINCT FROM OLD.state)
    EXECUTE FUNCTION account_circuit_changed();

-- Issue 23's event `account.circuit_changed` (docs/DESIGN.md, "Outbound webhooks"): each change of an
-- account's circuit goes to the account's endpoint and to the own endpoints of the campaigns not yet final
-- that dial with it (primary or fallback), each endpoint once, in order per account ('a<id>'). A row names
-- a campaign only when one is meant: a campaign's endpoint its own; the account's, the one campaign using the
-- account if there is exactly one, else none. `retry_at` is read from account_circuit: an operator's disable
-- has none (its first insert sets one that circuits.disable clears in the same transaction).
CREATE OR REPLACE FUNCTION webhook_circuit_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    users BIGINT[];
    target RECORD;
    data JSONB;
BEGIN
    SELECT array_agg(c.id ORDER BY c.id) INTO users FROM campaign c
    WHERE c.state IN ('draft', 'running', 'paused')
      AND (c.account_id = NEW.account_id
           OR EXISTS (SELECT 1 FROM campaign_fallback_account f
                      WHERE f.campaign_id = c.id AND f.account_id = NEW.account_id));
    FOR target IN SELECT e.id, e.campaign_id FROM webhook_endpoint e
                  WHERE e.account_id = NEW.account_id OR e.campaign_id = ANY(users) ORDER BY e.id LOOP
        IF data IS NULL THEN
            data := jsonb_build_object(
                'account_id', NEW.account_id,
                'account', (SELECT a.name FROM provider_account a WHERE a.id = NEW.account_id),
                'state', NEW.state, 'cause', NEW.cause, 'reason', NEW.reason, 'changed_at', NEW.changed_at,
                'retry_at', CASE WHEN NEW.state <> 'closed' AND NEW.cause IS DISTINCT FROM 'operator' THEN
                    (SELECT ac.retry_at FROM account_circuit ac WHERE ac.account_id = NEW.account_id) END);
        END IF;
        PERFORM webhook_record(target.id,
            coalesce(target.campaign_id, CASE WHEN cardinality(users) = 1 THEN users[1] END),
            'account.circuit_changed', 'a' || NEW.account_id, data);
    END LOOP;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER webhook_circuit_changed AFTER INSERT ON account_circuit_change FOR EACH ROW
    EXECUTE FUNCTION webhook_circuit_changed();
