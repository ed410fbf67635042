-- Every member of extension :'ext' (pg_depend, deptype 'e') with its full definition, one row
-- each, in a stable order: what an upgraded database must have exactly as a fresh install has
-- it (pg_dump --schema-only does not show extension members). scripts/upgrade_test.sh diffs
-- this output between the two. Columns are listed by position, so a column an upgrade script
-- appends must also be the last in the fresh install's CREATE TABLE.
\pset format unaligned
\pset tuples_only on
\pset fieldsep ' | '
WITH ext AS (SELECT oid FROM pg_catalog.pg_extension WHERE extname = :'ext'),
members AS (
    SELECT d.classid, d.objid FROM pg_catalog.pg_depend d, ext
    WHERE d.refclassid = 'pg_catalog.pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'
)
SELECT 'function', p.oid::regprocedure::text,
       pg_catalog.pg_get_functiondef(p.oid)
       || ' comment=' || coalesce(pg_catalog.obj_description(p.oid, 'pg_proc'), '')
       || ' acl=' || coalesce(p.proacl::text, '')
FROM members m JOIN pg_catalog.pg_proc p ON m.classid = 'pg_catalog.pg_proc'::regclass AND p.oid = m.objid
  AND p.prokind <> 'a'
UNION ALL
SELECT 'relation', c.oid::regclass::text,
       c.relkind::text || ' persistence=' || c.relpersistence::text
       || ' comment=' || coalesce(pg_catalog.obj_description(c.oid, 'pg_class'), '')
       || ' acl=' || coalesce(c.relacl::text, '')
       || ' options=' || coalesce(c.reloptions::text, '')
       || ' columns=' || coalesce((
            SELECT string_agg(a.attname || ' ' || pg_catalog.format_type(a.atttypid, a.atttypmod)
                   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                   || coalesce(' default ' || pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), '')
                   || CASE a.attgenerated WHEN 's' THEN ' generated' ELSE '' END
                   || coalesce(' identity ' || nullif(a.attidentity::text, ''), '')
                   || coalesce(' comment ' || pg_catalog.col_description(c.oid, a.attnum), '')
                   || coalesce(' acl ' || a.attacl::text, ''), ', ' ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a
            LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || ' constraints=' || coalesce((
            SELECT string_agg(co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
            FROM pg_catalog.pg_constraint co WHERE co.conrelid = c.oid), '')
       || ' indexes=' || coalesce((
            SELECT string_agg(pg_catalog.pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
            FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid), '')
       || ' triggers=' || coalesce((
            SELECT string_agg(pg_catalog.pg_get_triggerdef(t.oid), ', ' ORDER BY t.tgname)
            FROM pg_catalog.pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal), '')
       || ' policies=' || coalesce((
            SELECT string_agg(po.polname || ' ' || po.polcmd::text || ' ' || coalesce(pg_catalog.pg_get_expr(po.polqual, po.polrelid), ''), ', ' ORDER BY po.polname)
            FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid), '')
       || CASE WHEN c.relkind = 'v' THEN ' view=' || pg_catalog.pg_get_viewdef(c.oid) ELSE '' END
       || CASE WHEN c.relkind = 'S' THEN ' sequence=' || (
            SELECT s.seqtypid::regtype || ' ' || s.seqstart || ' ' || s.seqincrement || ' ' || s.seqmax || ' ' || s.seqmin || ' ' || s.seqcache || ' ' || s.seqcycle
            FROM pg_catalog.pg_sequence s WHERE s.seqrelid = c.oid) ELSE '' END
FROM members m JOIN pg_catalog.pg_class c ON m.classid = 'pg_catalog.pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'type', t.oid::regtype::text, t.typtype::text || ' ' || coalesce(pg_catalog.obj_description(t.oid, 'pg_type'), '')
FROM members m JOIN pg_catalog.pg_type t ON m.classid = 'pg_catalog.pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'schema', n.nspname::text, coalesce(n.nspacl::text, '') || ' ' || coalesce(pg_catalog.obj_description(n.oid, 'pg_namespace'), '')
FROM members m JOIN pg_catalog.pg_namespace n ON m.classid = 'pg_catalog.pg_namespace'::regclass AND n.oid = m.objid
UNION ALL
SELECT 'event trigger', e.evtname::text, e.evtevent || ' ' || e.evtfoid::regprocedure::text || ' ' || coalesce(e.evttags::text, '') || ' ' || e.evtenabled::text
FROM members m JOIN pg_catalog.pg_event_trigger e ON m.classid = 'pg_catalog.pg_event_trigger'::regclass AND e.oid = m.objid
UNION ALL
SELECT 'other', pg_catalog.pg_describe_object(m.classid, m.objid, 0), ''
FROM members m
WHERE m.classid NOT IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_class'::regclass, 'pg_catalog.pg_type'::regclass,
                        'pg_catalog.pg_namespace'::regclass, 'pg_catalog.pg_event_trigger'::regclass)
UNION ALL
SELECT 'configuration', 'extconfig',
       (SELECT string_agg(cfg::regclass::text || ' ' || coalesce(cond, ''), ', ' ORDER BY cfg::regclass::text)
        FROM pg_catalog.pg_extension e, ext,
             unnest(e.extconfig, e.extcondition) AS u(cfg, cond) WHERE e.oid = ext.oid)
ORDER BY 1, 2;
