-- Change-log compaction on a standalone node (`sync::changelog::compact_after`) looks for older
-- entries of the same entity (and stock cell); this index makes that a probe, not a scan. The
-- key expression must stay identical to the one in that query for the index to be used.
CREATE INDEX changes_by_key ON changes (entity, entity_id, json_extract(payload, '$.entry.key'), seq);
