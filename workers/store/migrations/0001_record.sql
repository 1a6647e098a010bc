-- The record (workers/store/README.md). Tables holding messages are partitioned by day: the
-- store creates each day's partition as records for it arrive and drops whole days past the
-- retention (docs/PRIVACY.md). Every row is keyed by the id it came with plus its day, so a
-- redelivered record is a conflict, not a second row.

CREATE TABLE contacts (
  id          text PRIMARY KEY,          -- identity: the BSUID, else the phone digits
  wa_id       text,                      -- phone digits, when known
  user_id     text,                      -- business-scoped user id, when known
  profile_name text,                     -- the name the person gave WhatsApp (latest seen)
  name        text,                      -- the name an operator gave them (the API)
  opt_in      boolean NOT NULL DEFAULT false,
  opt_in_at   timestamptz,
  allowlisted boolean NOT NULL DEFAULT false,
  first_seen  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contacts_wa_id ON contacts (wa_id) WHERE wa_id IS NOT NULL;

CREATE TABLE conversations (
  key             text PRIMARY KEY,      -- <phone_number_id>:<identity>
  phone_number_id text NOT NULL,
  identity        text NOT NULL,
  owner           text NOT NULL DEFAULT 'bot',
  owner_at        timestamptz,
  last_at         timestamptz NOT NULL,
  last_id         text NOT NULL,
  last_direction  text NOT NULL,
  last_type       text NOT NULL,
  last_body       text
);
CREATE INDEX conversations_recent ON conversations (last_at DESC, key DESC);
CREATE INDEX conversations_number ON conversations (phone_number_id, last_at DESC, key DESC);
CREATE INDEX conversations_identity ON conversations (identity);

-- Both directions: inbound keyed by wamid, outbound by request id (its wamid is in results).
CREATE TABLE messages (
  day              date NOT NULL,
  id               text NOT NULL,
  conversation_key text NOT NULL,
  direction        text NOT NULL CHECK (direction IN ('in', 'out')),
  type             text NOT NULL,
  body             text,
  at               timestamptz NOT NULL,
  raw              jsonb NOT NULL,
  PRIMARY KEY (id, day)
) PARTITION BY RANGE (day);
CREATE INDEX messages_conversation ON messages (conversation_key, at DESC, id DESC);

-- Meta's statuses, every one kept; the current status is the highest of them (read beats a
-- late delivered), failed beside them.
CREATE TABLE statuses (
  day         date NOT NULL,
  wamid       text NOT NULL,
  status      text NOT NULL,
  at          timestamptz NOT NULL,
  error_code  integer,
  error_title text,
  raw         jsonb NOT NULL,
  PRIMARY KEY (wamid, status, day)
) PARTITION BY RANGE (day);

-- The sender's outcomes (sent with the wamid, failed with Meta's error, held, duplicate...).
CREATE TABLE results (
  day           date NOT NULL,
  request_id    text NOT NULL,
  status        text NOT NULL,
  at            timestamptz NOT NULL,
  wamid         text,
  error_code    integer,
  error_message text,
  attempts      integer NOT NULL,
  PRIMARY KEY (request_id, status, at, day)
) PARTITION BY RANGE (day);
CREATE INDEX results_wamid ON results (wamid) WHERE wamid IS NOT NULL;

CREATE TABLE media (
  day              date NOT NULL,
  message_id       text NOT NULL,
  conversation_key text NOT NULL,
  type             text NOT NULL,
  status           text NOT NULL,
  storage_uri      text,
  sha256           text,
  size             bigint,
  mime_type        text,
  transcript       text,
  at               timestamptz NOT NULL,
  PRIMARY KEY (message_id, day)
) PARTITION BY RANGE (day);
CREATE INDEX media_sha256 ON media (sha256) WHERE sha256 IS NOT NULL;

-- Which turn each inbound message went into.
CREATE TABLE turn_messages (
  day        date NOT NULL,
  message_id text NOT NULL,
  turn_id    text NOT NULL,
  PRIMARY KEY (message_id, day)
) PARTITION BY RANGE (day);

CREATE TABLE handoffs (
  day              date NOT NULL,
  conversation_key text NOT NULL,
  event            text NOT NULL,
  owner            text NOT NULL,
  by_what          text NOT NULL,
  reason           text,
  at               timestamptz NOT NULL,
  PRIMARY KEY (conversation_key, at, event, day)
) PARTITION BY RANGE (day);

-- People who asked never to be messaged, kept after erasure as a salted hash only.
CREATE TABLE suppressed (
  identity_hash text PRIMARY KEY,
  reason        text NOT NULL,
  at            timestamptz NOT NULL DEFAULT now()
);
