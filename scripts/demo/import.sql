-- Imports one tenant's rows (run in its database: psql -d tenant_<id> -v dir=<payload dir>).
-- The payloads are JSON arrays written by transform.py; ids are generated there, so foreign
-- keys need no lookup. One transaction: a tenant is imported whole or not at all.
\set ON_ERROR_STOP on
\set clients `cat :'dir'/clients.json`
\set projects `cat :'dir'/projects.json`
\set activities `cat :'dir'/activities.json`
BEGIN;
INSERT INTO clients (id, name, email, phone, custom_fields)
SELECT id, name, email, phone, custom_fields
FROM jsonb_to_recordset(:'clients'::jsonb)
     AS r(id uuid, name text, email text, phone text, custom_fields jsonb);
INSERT INTO projects (id, client_id, name, status, custom_fields)
SELECT id, client_id, name, status, custom_fields
FROM jsonb_to_recordset(:'projects'::jsonb)
     AS r(id uuid, client_id uuid, name text, status text, custom_fields jsonb);
INSERT INTO activities (project_id, type, description, custom_fields)
SELECT project_id, type, description, custom_fields
FROM jsonb_to_recordset(:'activities'::jsonb)
     AS r(project_id uuid, type text, description text, custom_fields jsonb);
COMMIT;
