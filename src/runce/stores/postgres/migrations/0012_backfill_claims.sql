-- Parallel backfills shared by several processes (docs/backfills.md): a key range is claimed
-- by one process at a time, on its checkpoint row. claim_token is the claim's identity (every
-- checkpoint saved under it is conditional on it), claim_until when it expires unless renewed;
-- attempt_id is then the attempt the claimer works for. NULL: nobody holds the range.
ALTER TABLE {schema}.checkpoints
    ADD COLUMN claim_token text,
    ADD COLUMN claim_owner text,
    ADD COLUMN claim_until timestamptz;
