-- session_revalue: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=tick ARGV[2]=expected_hv ARGV[3]=total_value ARGV[4]=prices_json ARGV[5]=valued_at
--   ARGV[6]=fx_json ARGV[7]=flags_json
-- One session's revaluation: the prelude's `revalue` (its header says what it guarantees and
-- returns; session_revalue_many.lua runs the same function for a batch of one partition).
return revalue(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
