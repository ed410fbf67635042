-- Writes that violate the field definitions, each in its own transaction (rolled back in
-- any case). Run in a tenant database with VERBOSITY verbose: every one must fail with 23514.
\set ON_ERROR_STOP off
\set SHOW_CONTEXT never
\echo '--- 1. a client in a country that is not an option of the select field "country"'
BEGIN;
INSERT INTO clients (name, custom_fields)
SELECT 'Atlantis Records', custom_fields || '{"country": "Atlantis"}' FROM clients ORDER BY name LIMIT 1;
ROLLBACK;
\echo '--- 2. an invoice with a negative total and a date that is not in the calendar (both reported)'
BEGIN;
UPDATE projects SET custom_fields = custom_fields || '{"total": -5, "invoice_date": "2013-02-30"}'
WHERE name = (SELECT min(name) FROM projects);
ROLLBACK;
\echo '--- 3. an invoice line with a fractional quantity and a unit price given as the string "5"'
BEGIN;
INSERT INTO activities (project_id, type, description, custom_fields)
SELECT project_id, 'invoice_line', 'bad line', custom_fields || '{"quantity": 1.5, "unit_price": "5"}'
FROM activities LIMIT 1;
ROLLBACK;
\echo '--- 4. a client with a postal code breaking the pattern and a key that is not a defined field'
BEGIN;
INSERT INTO clients (name, custom_fields)
SELECT 'Typo Ltd', custom_fields || '{"postal_code": "12_345", "colour": "red"}' FROM clients ORDER BY name LIMIT 1;
ROLLBACK;
