-- The tenant schema (original design, ../shared/SEED.md "Tenant database"). Not part of the
-- extension script: messiah runs it once in the template database (after CREATE EXTENSION
-- messiah there), and every tenant database is a clone of that template. Tables created
-- here belong to the tenant, so pg_dump of a tenant database dumps them.

CREATE TABLE public.clients (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL,
    email         text UNIQUE,
    phone         text,
    custom_fields jsonb DEFAULT '{}',
    created_at    timestamptz DEFAULT now(),
    updated_at    timestamptz DEFAULT now()
);

CREATE TABLE public.projects (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    client_id     uuid REFERENCES public.clients (id) ON DELETE CASCADE,
    name          text NOT NULL,
    status        text DEFAULT 'active',
    custom_fields jsonb DEFAULT '{}',
    created_at    timestamptz DEFAULT now(),
    updated_at    timestamptz DEFAULT now()
);

CREATE TABLE public.activities (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id    uuid REFERENCES public.projects (id) ON DELETE CASCADE,
    type          text NOT NULL,
    description   text,
    custom_fields jsonb DEFAULT '{}',
    created_at    timestamptz DEFAULT now()
);

CREATE INDEX clients_email_idx ON public.clients (email);
CREATE INDEX projects_client_id_idx ON public.projects (client_id);
CREATE INDEX activities_project_id_idx ON public.activities (project_id);
CREATE INDEX clients_custom_fields_gin ON public.clients USING gin (custom_fields);
CREATE INDEX projects_custom_fields_gin ON public.projects USING gin (custom_fields);

CREATE TRIGGER clients_touch BEFORE UPDATE ON public.clients
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();
CREATE TRIGGER projects_touch BEFORE UPDATE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION messiah.touch_updated_at();

-- Custom-field enforcement (DESIGN.md decisions 5 and 6): validates custom_fields against
-- the local copy of the tenant's definitions and applies defaults on INSERT. The argument
-- names the entity table, so renaming a table does not change which definitions apply.
CREATE TRIGGER clients_custom_fields BEFORE INSERT OR UPDATE ON public.clients
    FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('clients');
CREATE TRIGGER projects_custom_fields BEFORE INSERT OR UPDATE ON public.projects
    FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('projects');
CREATE TRIGGER activities_custom_fields BEFORE INSERT OR UPDATE ON public.activities
    FOR EACH ROW EXECUTE FUNCTION messiah.enforce_custom_fields('activities');
