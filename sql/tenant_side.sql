-- Objects messiah uses inside a tenant database (they exist, unused, in the admin database too,
-- because both run the same extension).

-- The read-only copy of the tenant's active field definitions (DESIGN.md decision 5): one row,
-- replaced as a whole by messiah.install_field_snapshot() over a connection from the admin
-- database when a definition change commits there. Triggers validate from this copy, so the
-- tenant database keeps enforcing its fields when the admin database is unreachable.
CREATE TABLE messiah.field_snapshot (
    singleton    boolean PRIMARY KEY DEFAULT true CONSTRAINT field_snapshot_one_row CHECK (singleton),
    tenant_id    text NOT NULL,
    version      bigint NOT NULL,
    snapshot     jsonb NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON messiah.field_snapshot FROM PUBLIC;
COMMENT ON TABLE messiah.field_snapshot IS
  'Copy of this tenant''s active field definitions and unknown-field policy, version-stamped; written only by messiah.install_field_snapshot().';

-- BEFORE INSERT OR UPDATE row trigger on the tenant tables (src/enforce.rs): validates
-- custom_fields against messiah.field_snapshot, applies defaults on INSERT.
CREATE FUNCTION messiah.enforce_custom_fields() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'messiah_enforce_custom_fields';
COMMENT ON FUNCTION messiah.enforce_custom_fields() IS
  'Trigger (argument: entity table name): validates custom_fields against this database''s copy of the tenant''s field definitions (23514 with every failing field in DETAIL), applies defaults on INSERT, strips unknown keys under policy strip. DESIGN.md decisions 5-6.';
